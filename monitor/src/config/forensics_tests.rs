//! `[forensics] stacks` and `--stacks`.

use clap::{Args as _, Command};

use super::{
    tests::{file_error, resolve},
    *,
};

/// Off by default; the file turns it on; the flag wins over the file.
#[test]
fn off_by_default_file_and_flag() {
    assert!(!resolve(&RunArgs::default(), "").unwrap().stacks);
    let on = "[forensics]\nstacks = true\n";
    assert!(resolve(&RunArgs::default(), on).unwrap().stacks);
    let args = RunArgs {
        stacks: Some("false".into()),
        ..RunArgs::default()
    };
    assert!(!resolve(&args, on).unwrap().stacks, "the flag wins");
}

#[test]
fn the_flag_is_documented_with_its_default() {
    let command = RunArgs::augment_args(Command::new("run"));
    let flag = command
        .get_arguments()
        .find(|a| a.get_long() == Some("stacks"))
        .expect("--stacks");
    let help = flag.get_help().unwrap().to_string();
    assert!(help.ends_with("[default: false]"), "{help}");
}

#[test]
fn bad_values_are_one_line_naming_the_key() {
    let cases = [
        (
            "[forensics]\nstack = true",
            r#"[forensics]: unknown key "stack" (did you mean stacks?)"#,
        ),
        ("forensics = 1", "forensics: expected a [forensics] table"),
    ];
    for (text, expected) in cases {
        let error = file_error(text);
        assert!(error.ends_with(expected), "{text}: {error}");
    }
}
