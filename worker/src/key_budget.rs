//! The limits of one API key of the OpenAI-compatible endpoint, kept by the key's own Durable
//! Object (named by a digest prefix of the key, never the key): the same limits a session has
//! (messages and characters per minute, characters per day), counted across every request
//! made with the key, wherever it lands. The Worker asks before any upstream request; the
//! object answers from its stored budget. Both sides of that small contract live here.

use serde::{Deserialize, Serialize};
use worker::{Env, Method, Request, RequestInit, Response, Storage};

use crate::budget::{BudgetLimits, SpeechBudget};
use crate::openai::ApiError;
use crate::settings::SESSIONS_BINDING;
use crate::time::Millis;

/// The object's path for an admission (no session path looks like it).
pub const ADMIT_PATH: &str = "/_key/admit";

/// Storage key of the key's budget.
const BUDGET_KEY: &str = "key_budget";

#[derive(Serialize, Deserialize)]
struct Ask {
    chars: u64,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    /// Absent: admitted.
    retry_after_s: Option<u32>,
}

/// The Worker's side: asks the key's object to spend `chars` for one message.
pub async fn ask(env: &Env, key_object: &str, chars: u64) -> Result<(), ApiError> {
    let unavailable = |_| ApiError::UNAVAILABLE;
    let namespace = env.durable_object(SESSIONS_BINDING).map_err(unavailable)?;
    let stub = namespace
        .id_from_name(key_object)
        .and_then(|id| id.get_stub())
        .map_err(unavailable)?;
    let body = serde_json::to_string(&Ask { chars }).expect("serialises");
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let request =
        Request::new_with_init(&format!("https://key{ADMIT_PATH}"), &init).map_err(unavailable)?;
    let mut response = stub
        .fetch_with_request(request)
        .await
        .map_err(unavailable)?;
    if response.status_code() != 200 {
        return Err(ApiError::UNAVAILABLE);
    }
    let answer: Answer = response.json().await.map_err(unavailable)?;
    match answer.retry_after_s {
        None => Ok(()),
        Some(after) => Err(ApiError::rate_limited(after)),
    }
}

/// The object's side: spends the asked characters from the stored budget, or says when.
/// `budget` is the object's copy in memory (read from storage on first use).
pub async fn answer(
    storage: &Storage,
    budget: &std::cell::RefCell<Option<SpeechBudget>>,
    limits: &BudgetLimits,
    mut req: Request,
    now: Millis,
) -> worker::Result<Response> {
    let Ok(ask) = req.json::<Ask>().await else {
        return Response::error("bad admission request", 400);
    };
    if budget.borrow().is_none() {
        let Ok(stored) = storage.get::<SpeechBudget>(BUDGET_KEY).await else {
            return Response::error("storage unavailable", 503);
        };
        budget.replace(Some(stored.unwrap_or_default()));
    }
    let verdict = budget
        .borrow_mut()
        .as_mut()
        .expect("read above")
        .admit(limits, ask.chars, now);
    let retry_after_s = match verdict {
        Ok(()) => {
            let snapshot = budget.borrow().clone().expect("read above");
            if storage.put(BUDGET_KEY, snapshot).await.is_err() {
                return Response::error("storage unavailable", 503);
            }
            None
        }
        Err(after) => Some(after),
    };
    Response::from_json(&Answer { retry_after_s })
}
