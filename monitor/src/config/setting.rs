//! What one setting is ([`Row`]: its key, flag, default, help) and the one way every setting is
//! resolved ([`value`]: flag over file over default), for the top-level keys and for `[probe]`
//! alike. The rows themselves are in `catalogue.rs`, written through [`settings!`],
//! which also makes the [`RunArgs`] field and the typed resolver of each.

use std::path::PathBuf;

use super::{ConfigError, values::Raw};

/// Where a setting's key lives in the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Table {
    /// A top-level key.
    Top,
    /// A key of the `[probe]` table.
    Probe,
    /// A key of the `[kubernetes]` table.
    Kubernetes,
    /// A key of the `[forensics]` table.
    Forensics,
}

/// How a setting is spelled on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flag {
    /// `--` and the key with `-` for `_` (`scan_interval`: `--scan-interval`).
    FromKey,
    /// Spelled otherwise (`--web.config.file`, `--probe-count`).
    Named(&'static str),
    /// File only.
    None,
}

/// How clap reads a flag's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    /// One value, which cannot start with `-`.
    Text,
    /// One value that may start with `-` (`--scan-interval -5s`): our parser then names the
    /// flag in a "negative duration" error instead of clap's "unexpected argument".
    Hyphen,
    /// One value that may be a negative number (`--top-n -5`), for the same reason.
    Number,
    /// `--flag` alone means true; a value needs `=` (`--flag=false`).
    Switch,
}

/// One setting: everything about it but its type and parser (given beside it to [`settings!`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Row {
    /// The [`RunArgs`] field and clap id (set by [`settings!`]).
    pub id: &'static str,
    pub table: Table,
    /// The key in its table, as the file spells it; empty: the id (see [`Row::key`]).
    pub key: &'static str,
    pub flag: Flag,
    /// The built-in default, written as a flag value and parsed as one.
    pub default: &'static str,
    /// What `--help` calls an empty default.
    pub empty_default: &'static str,
    /// clap's value name (`DURATION`).
    pub value_name: &'static str,
    pub style: Style,
    /// An environment variable that sets the flag.
    pub env: Option<&'static str>,
    /// The flag's help, without the `[default: …]` that [`Row::help`] adds.
    pub about: &'static str,
}

impl Row {
    /// The fields most top-level rows share; a row states the rest.
    pub(super) const TOP: Row = Row {
        id: "",
        table: Table::Top,
        key: "",
        flag: Flag::FromKey,
        default: "",
        empty_default: "none",
        value_name: "",
        style: Style::Text,
        env: None,
        about: "",
    };

    /// The same for `[probe]` rows.
    pub(super) const PROBE: Row = Row {
        table: Table::Probe,
        ..Row::TOP
    };

    /// The same for `[kubernetes]` rows.
    pub(super) const KUBERNETES: Row = Row {
        table: Table::Kubernetes,
        ..Row::TOP
    };

    /// The same for `[forensics]` rows.
    pub(super) const FORENSICS: Row = Row {
        table: Table::Forensics,
        ..Row::TOP
    };

    /// The key in its table: `key`, or the id when the key is the field's name.
    pub(super) const fn key(&self) -> &'static str {
        if self.key.is_empty() {
            self.id
        } else {
            self.key
        }
    }

    /// The flag without `--`, if the setting has one.
    pub(super) fn flag(&self) -> Option<String> {
        match self.flag {
            Flag::FromKey => Some(self.key().replace('_', "-")),
            Flag::Named(flag) => Some(flag.to_owned()),
            Flag::None => None,
        }
    }

    /// The key as messages name it: `scan_interval`, `[probe] count`.
    pub(super) fn file_key(&self) -> String {
        match self.table {
            Table::Top => self.key().to_owned(),
            Table::Probe => format!("[probe] {}", self.key()),
            Table::Kubernetes => format!("[kubernetes] {}", self.key()),
            Table::Forensics => format!("[forensics] {}", self.key()),
        }
    }

    /// The flag's help, ending with the real default: `… [default: 5s]`.
    pub(super) fn help(&self) -> String {
        let shown = if self.default.is_empty() {
            self.empty_default
        } else {
            self.default
        };
        format!("{} [default: {shown}]", self.about)
    }
}

/// The config file's settings: top-level keys and the `[probe]` table, keys checked against
/// the catalogue, values not yet parsed (all empty: no file).
#[derive(Clone, Debug, Default)]
pub(super) struct FileValues {
    /// The file, for messages.
    pub path: PathBuf,
    pub top: toml::Table,
    pub probe: toml::Table,
    pub kubernetes: toml::Table,
    pub forensics: toml::Table,
}

impl FileValues {
    fn get(&self, table: Table, key: &str) -> Option<&toml::Value> {
        match table {
            Table::Top => self.top.get(key),
            Table::Probe => self.probe.get(key),
            Table::Kubernetes => self.kubernetes.get(key),
            Table::Forensics => self.forensics.get(key),
        }
    }
}

/// Setting `row`: the flag's text if given, else the file's value, else the default, parsed by
/// `parse`. A bad file value is an error even when a flag replaces it: the file is what gets
/// deployed, it should not hide mistakes.
pub(super) fn value<T>(
    row: &Row,
    file: &FileValues,
    flag: Option<&str>,
    parse: impl Fn(Raw<'_>) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let from_file = match file.get(row.table, row.key()) {
        Some(value) => Some(parse(Raw::Toml(value)).map_err(|problem| {
            ConfigError::in_file(&file.path, format!("{}: {problem}", row.file_key()))
        })?),
        None => None,
    };
    if let Some(text) = flag {
        return parse(Raw::Text(text)).map_err(|problem| ConfigError::Flag {
            flag: row.flag().unwrap_or_default(),
            problem,
        });
    }
    if let Some(value) = from_file {
        return Ok(value);
    }
    parse(Raw::Text(row.default)).map_err(|problem| ConfigError::Default {
        key: row.file_key(),
        problem,
    })
}

/// The settings, one row each: `field: Type = parser, Row { … };` under `flags` (a
/// [`RunArgs`] field and a flag) or `file_only`. Makes the `RunArgs` struct,
/// [`CATALOGUE`](super::catalogue::CATALOGUE), the `Resolver` with one method per setting
/// (named as the field, returning `Type`), and reading the fields from clap's matches.
macro_rules! settings {
    (
        flags { $( $field:ident: $ty:ty = $parse:expr, $row:expr; )* }
        file_only { $( $file_field:ident: $file_ty:ty = $file_parse:expr, $file_row:expr; )* }
    ) => {
        /// `tcp-liveness run`'s flags as given, text not yet parsed (None: not given, so the file
        /// and then the default apply). Each field is the setting of the same id in
        /// [`CATALOGUE`], which has its flag, help and default.
        #[derive(Clone, Debug, Default)]
        pub struct RunArgs {
            /// `--config FILE`: the TOML config file.
            pub config: Option<std::path::PathBuf>,
            $(
                #[doc = concat!("The `", stringify!($field), "` setting's flag.")]
                pub $field: Option<String>,
            )*
        }

        /// Every setting, in the order of `--help` and of the example file.
        pub(super) const CATALOGUE: &[Row] = &[
            $( Row { id: stringify!($field), ..$row }, )*
            $( Row { id: stringify!($file_field), flag: Flag::None, ..$file_row }, )*
        ];

        /// Resolves settings from the flags and the file: one method per setting, named as its
        /// field, returning its parsed value.
        pub(super) struct Resolver<'a> {
            pub args: &'a RunArgs,
            pub file: &'a FileValues,
        }

        impl Resolver<'_> {
            $(
                pub(super) fn $field(&self) -> Result<$ty, ConfigError> {
                    let flag = self.args.$field.as_deref();
                    value(row(stringify!($field)), self.file, flag, $parse)
                }
            )*
            $(
                pub(super) fn $file_field(&self) -> Result<$file_ty, ConfigError> {
                    value(row(stringify!($file_field)), self.file, None, $file_parse)
                }
            )*
        }

        impl clap::FromArgMatches for RunArgs {
            fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
                let mut args = Self::default();
                args.update_from_arg_matches(matches)?;
                Ok(args)
            }

            fn update_from_arg_matches(
                &mut self,
                matches: &clap::ArgMatches,
            ) -> Result<(), clap::Error> {
                if let Some(path) = matches.get_one::<std::path::PathBuf>("config") {
                    self.config = Some(path.clone());
                }
                $(
                    if let Some(text) = matches.get_one::<String>(stringify!($field)) {
                        self.$field = Some(text.clone());
                    }
                )*
                Ok(())
            }
        }
    };
}
pub(super) use settings;
