use std::path::Path;

use super::super::{FileConfig, RunArgs, RunConfig};
use super::*;

fn parse(text: &str) -> Result<RunConfig, String> {
    let file = FileConfig::parse(Path::new("agent.toml"), text).map_err(|e| e.to_string())?;
    RunConfig::resolve(&RunArgs::default(), &file).map_err(|e| e.to_string())
}

#[test]
fn paths_are_read_in_order_with_the_share_applied() {
    let config = parse(
        "path_timeout_share = 0.5\n\
         [[path]]\nname = \"aws-nlb\"\ncidr = \"10.0.0.0/8\"\nremote_port = 443\nidle_timeout = \"350s\"\n\
         [[path]]\ncidr = \"fd00::/8\"\nidle_timeout = \"4m\"\n",
    )
    .expect("valid");
    let paths = &config.policy.paths;
    assert_eq!(paths.len(), 2);
    assert_eq!(paths[0].name, "aws-nlb");
    assert_eq!(paths[0].remote_port, Some(443));
    assert_eq!(paths[0].idle_timeout, Duration::from_secs(350));
    assert_eq!(paths[0].report_after, Duration::from_secs(175));
    assert_eq!(paths[1].name, "fd00::/8", "unnamed: named by its range");
    assert_eq!(config.policy.path_timeout_share.to_string(), "0.5");
}

#[test]
fn without_paths_the_default_share_is_kept() {
    let config = parse("").expect("valid");
    assert!(config.policy.paths.is_empty());
    assert_eq!(config.policy.path_timeout_share, Share::DEFAULT);
}

#[test]
fn bad_paths_are_one_line_naming_the_problem() {
    let cases = [
        (
            "[[path]]\nidle_timeout = \"1m\"\n",
            "[[path]] #1: cidr is missing",
        ),
        (
            "[[path]]\ncidr = \"10.0.0.0/8\"\n",
            "[[path]] #1: idle_timeout is missing",
        ),
        (
            "[[path]]\ncidr = \"10.0.0.1/8\"\nidle_timeout = \"1m\"\n",
            "[[path]] #1: cidr: \"10.0.0.1/8\": host bits are set",
        ),
        (
            "[[path]]\ncidr = \"10.0.0.0/8\"\nidle_timeout = \"0s\"\n",
            "[[path]] #1: idle_timeout: \"0s\" is out of range",
        ),
        (
            "[[path]]\ncidr = \"10.0.0.0/8\"\nidle_timeout = \"1m\"\nremote_prot = 443\n",
            "did you mean remote_port?",
        ),
        (
            "[[path]]\ncidr = \"10.0.0.0/8\"\nidle_timeout = \"1m\"\nname = \"conntrack\"\n",
            "the agent's own",
        ),
        (
            "[[path]]\nname = \"a\"\ncidr = \"10.0.0.0/8\"\nidle_timeout = \"1m\"\n\
             [[path]]\nname = \"a\"\ncidr = \"fd00::/8\"\nidle_timeout = \"1m\"\n",
            "[[path]] #2: name \"a\" is used twice",
        ),
        (
            "[path]\ncidr = \"10.0.0.0/8\"\n",
            "expected [[path]] sections",
        ),
        (
            "path_timeout_share = 1.5\n",
            "path_timeout_share: 1.5 must be above 0 and at most 1",
        ),
    ];
    for (text, expected) in cases {
        let error = parse(text).expect_err(text);
        assert!(error.contains(expected), "{text:?}: {error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }
}
