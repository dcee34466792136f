//! The Orpheus models and their voices, and how a `speak`'s optional voice and model resolve.

use crate::ErrorCode;

/// An Orpheus text-to-speech model served by Groq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// `canopylabs/orpheus-v1-english`; supports bracketed vocal directions.
    English,
    /// `canopylabs/orpheus-arabic-saudi`; Saudi Arabic, no vocal directions.
    ArabicSaudi,
}

/// The model used when a `speak` names neither model nor voice.
pub const DEFAULT_MODEL: Model = Model::English;

impl Model {
    /// Every model, in catalogue order.
    pub const ALL: [Model; 2] = [Model::English, Model::ArabicSaudi];

    /// The model id as Groq names it.
    pub fn id(self) -> &'static str {
        match self {
            Model::English => "canopylabs/orpheus-v1-english",
            Model::ArabicSaudi => "canopylabs/orpheus-arabic-saudi",
        }
    }

    /// The model's voices, as Groq names them.
    pub fn voices(self) -> &'static [&'static str] {
        match self {
            Model::English => &["autumn", "diana", "hannah", "austin", "daniel", "troy"],
            Model::ArabicSaudi => &["fahad", "sultan", "lulwa", "noura"],
        }
    }

    /// The voice used when a `speak` names this model but no voice.
    pub fn default_voice(self) -> &'static str {
        match self {
            Model::English => "troy",
            Model::ArabicSaudi => "fahad",
        }
    }

    /// Looks a model up by its Groq id.
    pub fn from_id(id: &str) -> Option<Model> {
        Self::ALL.into_iter().find(|m| m.id() == id)
    }

    /// The model a voice belongs to.
    pub fn of_voice(voice: &str) -> Option<Model> {
        Self::ALL.into_iter().find(|m| m.voices().contains(&voice))
    }
}

/// Resolves a `speak`'s optional voice and model: a voice alone implies its model, a model alone
/// implies its default voice, neither means the English default voice `troy`.
pub fn resolve(
    voice: Option<&str>,
    model: Option<&str>,
) -> Result<(Model, &'static str), ErrorCode> {
    let model = model
        .map(|id| Model::from_id(id).ok_or(ErrorCode::UnknownModel))
        .transpose()?;
    let Some(voice) = voice else {
        let model = model.unwrap_or(DEFAULT_MODEL);
        return Ok((model, model.default_voice()));
    };
    let owner = Model::of_voice(voice).ok_or(ErrorCode::UnknownVoice)?;
    if model.is_some_and(|m| m != owner) {
        return Err(ErrorCode::VoiceModelMismatch);
    }
    let voice = owner
        .voices()
        .iter()
        .copied()
        .find(|v| *v == voice)
        .expect("of_voice found it");
    Ok((owner, voice))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_voices() {
        let n: usize = Model::ALL.iter().map(|m| m.voices().len()).sum();
        assert_eq!(n, 10);
    }

    #[test]
    fn resolution() {
        assert_eq!(resolve(None, None), Ok((Model::English, "troy")));
        assert_eq!(
            resolve(Some("noura"), None),
            Ok((Model::ArabicSaudi, "noura"))
        );
        assert_eq!(
            resolve(None, Some("canopylabs/orpheus-arabic-saudi")),
            Ok((Model::ArabicSaudi, "fahad"))
        );
        assert_eq!(
            resolve(Some("diana"), Some("canopylabs/orpheus-v1-english")),
            Ok((Model::English, "diana"))
        );
        assert_eq!(resolve(Some("bob"), None), Err(ErrorCode::UnknownVoice));
        assert_eq!(resolve(Some("Troy"), None), Err(ErrorCode::UnknownVoice));
        assert_eq!(
            resolve(None, Some("whisper-1")),
            Err(ErrorCode::UnknownModel)
        );
        assert_eq!(
            resolve(Some("troy"), Some("canopylabs/orpheus-arabic-saudi")),
            Err(ErrorCode::VoiceModelMismatch)
        );
    }
}
