//! OpenAI's model and voice names, said in Orpheus': code written for OpenAI's speech API
//! (`tts-1`, `gpt-4o-mini-tts`; `alloy`, `ash`, `nova`…) works against the relay with only its
//! base URL and key changed. The table below is the default; an operator changes or extends it
//! with `OPENAI_VOICES` and `OPENAI_MODELS` (`name=orpheus-name`, comma separated).

/// OpenAI's speech models, each said as an Orpheus model.
const MODELS: [(&str, &str); 4] = [
    ("tts-1", "canopylabs/orpheus-v1-english"),
    ("tts-1-hd", "canopylabs/orpheus-v1-english"),
    ("gpt-4o-mini-tts", "canopylabs/orpheus-v1-english"),
    (
        "gpt-4o-mini-tts-2025-03-20",
        "canopylabs/orpheus-v1-english",
    ),
];

/// OpenAI's voices, each said by the English Orpheus voice nearest in kind (the women's voices
/// by autumn, diana and hannah; the men's by austin, daniel and troy).
const VOICES: [(&str, &str); 13] = [
    ("alloy", "autumn"),
    ("ash", "troy"),
    ("ballad", "daniel"),
    ("cedar", "daniel"),
    ("coral", "diana"),
    ("echo", "austin"),
    ("fable", "daniel"),
    ("marin", "hannah"),
    ("nova", "hannah"),
    ("onyx", "troy"),
    ("sage", "autumn"),
    ("shimmer", "diana"),
    ("verse", "austin"),
];

/// The names a request may use for Orpheus' models and voices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    models: Vec<(String, String)>,
    voices: Vec<(String, String)>,
}

impl Default for Names {
    fn default() -> Self {
        let owned = |table: &[(&str, &str)]| {
            table
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        Self {
            models: owned(&MODELS),
            voices: owned(&VOICES),
        }
    }
}

impl Names {
    /// The default table, with the operator's `name=orpheus-name` pairs (from `OPENAI_MODELS`
    /// and `OPENAI_VOICES`) replacing or adding to it. Malformed pairs are skipped.
    pub fn with(models: &str, voices: &str) -> Self {
        let mut names = Self::default();
        merge(&mut names.models, models);
        merge(&mut names.voices, voices);
        names
    }

    /// The Orpheus model `name` stands for (itself when it is no alias).
    pub fn model<'a>(&'a self, name: &'a str) -> &'a str {
        lookup(&self.models, name)
    }

    /// The Orpheus voice `name` stands for (itself when it is no alias).
    pub fn voice<'a>(&'a self, name: &'a str) -> &'a str {
        lookup(&self.voices, name)
    }
}

fn lookup<'a>(table: &'a [(String, String)], name: &'a str) -> &'a str {
    table
        .iter()
        .find(|(alias, _)| alias == name)
        .map_or(name, |(_, orpheus)| orpheus)
}

fn merge(table: &mut Vec<(String, String)>, pairs: &str) {
    for pair in pairs.split(',') {
        let Some((alias, orpheus)) = pair.split_once('=') else {
            continue;
        };
        let (alias, orpheus) = (alias.trim(), orpheus.trim());
        if alias.is_empty() || orpheus.is_empty() {
            continue;
        }
        table.retain(|(a, _)| a != alias);
        table.push((alias.to_owned(), orpheus.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orpheus_protocol::{resolve_voice, Model};

    #[test]
    fn every_default_name_is_an_orpheus_model_and_voice() {
        let names = Names::default();
        for (model, _) in MODELS {
            for (voice, _) in VOICES {
                let resolved = resolve_voice(Some(names.voice(voice)), Some(names.model(model)));
                assert!(
                    matches!(resolved, Ok((Model::English, _))),
                    "{model} {voice}"
                );
            }
        }
        assert_eq!(names.voice("troy"), "troy", "Orpheus' own names stand");
        assert_eq!(
            names.model("canopylabs/orpheus-arabic-saudi"),
            "canopylabs/orpheus-arabic-saudi"
        );
    }

    #[test]
    fn an_operator_changes_and_adds_names() {
        let names = Names::with(
            "my-tts = canopylabs/orpheus-arabic-saudi",
            "alloy=hannah,bad,=x,sunny=autumn",
        );
        assert_eq!(names.voice("alloy"), "hannah");
        assert_eq!(names.voice("sunny"), "autumn");
        assert_eq!(names.voice("ash"), "troy");
        assert_eq!(names.model("my-tts"), "canopylabs/orpheus-arabic-saudi");
        assert_eq!(names.model("tts-1"), "canopylabs/orpheus-v1-english");
    }
}
