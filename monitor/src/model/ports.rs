//! Which local ports are services (something listens on them) and which are ephemeral.

use std::collections::HashSet;

use super::{Connection, labels};

/// The ports this host serves on: (network namespace, port) of every listening socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePorts(HashSet<(Option<u32>, u16)>);

impl ServicePorts {
    /// Records a listening socket.
    pub fn insert(&mut self, netns: Option<u32>, port: u16) {
        self.0.insert((netns, port));
    }

    /// The local port of `c` when it is a port something listens on (an accepted connection);
    /// None for outbound connections, whose local port is ephemeral: labelling or grouping by it
    /// would make one series or alert per leaked socket.
    #[must_use]
    pub fn service_port(&self, c: &Connection) -> Option<u16> {
        self.resolve(c.netns, c.local.port())
    }

    /// [`service_port`](Self::service_port) for a (namespace, local port) pair.
    #[must_use]
    pub fn resolve(&self, netns: Option<u32>, port: u16) -> Option<u16> {
        self.0.contains(&(netns, port)).then_some(port)
    }
}

/// Where a group of connections is, as a label: a service port, outbound (the host opened them;
/// their ephemeral ports are not worth a label), or several ports folded together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocalPort {
    /// A port something listens on (an accepted connection).
    Service(u16),
    /// Connections this host opened: [`labels::OUTBOUND`].
    Outbound,
    /// An owner's ports past the top-N, or groups past the alert cap: [`labels::OTHER`].
    Other,
}

impl LocalPort {
    /// The `local_port` label value: the number, `outbound` or `other`.
    #[must_use]
    pub fn label(self) -> String {
        match self {
            Self::Service(port) => port.to_string(),
            Self::Outbound => labels::OUTBOUND.to_owned(),
            Self::Other => labels::OTHER.to_owned(),
        }
    }
}

impl From<Option<u16>> for LocalPort {
    /// [`ServicePorts::service_port`]'s answer: None is outbound.
    fn from(port: Option<u16>) -> Self {
        port.map_or(Self::Outbound, Self::Service)
    }
}

/// JSON: the port number, `null` for outbound (as before folding existed), `"other"` when folded.
impl serde::Serialize for LocalPort {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Service(port) => s.serialize_u16(*port),
            Self::Outbound => s.serialize_none(),
            Self::Other => s.serialize_str(labels::OTHER),
        }
    }
}

impl<'de> serde::Deserialize<'de> for LocalPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Port(u16),
            Word(String),
        }
        match Option::<Wire>::deserialize(d)? {
            None => Ok(Self::Outbound),
            Some(Wire::Port(port)) => Ok(Self::Service(port)),
            Some(Wire::Word(word)) if word == labels::OTHER => Ok(Self::Other),
            Some(Wire::Word(word)) => Err(serde::de::Error::custom(format!(
                "local_port: expected a port, null or \"other\", got {word:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_port_labels_and_json() {
        let ports = [
            LocalPort::Service(6379),
            LocalPort::Outbound,
            LocalPort::Other,
        ];
        let labels: Vec<_> = ports.iter().map(|p| p.label()).collect();
        assert_eq!(labels, ["6379", "outbound", "other"]);
        let json = serde_json::to_string(&ports).unwrap();
        assert_eq!(json, r#"[6379,null,"other"]"#);
        let back: Vec<LocalPort> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ports);
        assert!(serde_json::from_str::<LocalPort>(r#""ssh""#).is_err());
        assert_eq!(LocalPort::from(None), LocalPort::Outbound);
    }
}
