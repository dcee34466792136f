//! How the relay reads a message's text before it is said.

/// How a message's text is read: as Markdown (its markup not said: what a language model
/// writes) or as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Markup {
    /// Markdown: emphasis, lists, links, code and the like are read as a listener should hear
    /// them (the default: replies from language models are written in it by habit).
    #[default]
    Markdown,
    /// Every character as it is.
    Plain,
}

impl Markup {
    /// Every kind.
    pub const ALL: [Markup; 2] = [Self::Markdown, Self::Plain];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Markdown => "markdown",
            Self::Plain => "plain",
        }
    }

    /// The kind of a wire name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}
