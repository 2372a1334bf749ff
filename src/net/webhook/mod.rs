//! Twilio Proxy's callbacks over HTTP: the status callback sender (`status`: durable queue
//! in the store, ordered per interaction, retried with backoff), and the intercept and
//! out-of-session calls the data planes await before they forward. Every request is a
//! form-encoded POST signed with `X-Twilio-Signature` the way Twilio signs its webhooks.

mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};

use crate::core::callback::{self, CallbackItem};
use crate::core::engine::{Engine, NewParticipant, NewSession};
use crate::core::model::Mode;
use crate::core::{datetime, E164};

pub use status::{start_status_sender, StatusSink};

/// `X-Twilio-Signature`: Base64(HMAC-SHA1(auth token, URL + each parameter's name and
/// value, sorted by name, then value)).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// How one callback request ended.
#[derive(Debug)]
pub enum Answer {
    /// The receiver answered with this status, content type and body.
    Status(u16, String, Vec<u8>),
    /// No answer within `webhooks.timeout`.
    Timeout,
    /// Connection refused, reset, DNS, TLS...
    Failed,
}

impl Answer {
    fn outcome(&self) -> &'static str {
        match self {
            Answer::Status(c, ..) if (200..300).contains(c) => "2xx",
            Answer::Status(c, ..) if (300..400).contains(c) => "3xx",
            Answer::Status(c, ..) if (400..500).contains(c) => "4xx",
            Answer::Status(..) => "5xx",
            Answer::Timeout => "timeout",
            Answer::Failed => "error",
        }
    }
}

/// What the intercept callback decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Block,
}

/// A session the out-of-session callback asked for (its JSON answer).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoCreate {
    pub participant_identifier: String,
    pub participant_proxy_identifier: Option<String>,
    pub unique_name: Option<String>,
    pub mode: Option<Mode>,
    pub ttl: Option<u64>,
    pub date_expiry: Option<i64>,
}

impl AutoCreate {
    /// Reads the JSON answer; `None` when it is not one (no `participantIdentifier`).
    pub fn from_json(body: &[u8]) -> Option<AutoCreate> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Some(AutoCreate {
            participant_identifier: s("participantIdentifier")?,
            participant_proxy_identifier: s("participantProxyIdentifier"),
            unique_name: s("uniqueName"),
            mode: s("mode").and_then(|m| Mode::parse(&m)),
            ttl: v.get("ttl").and_then(|t| {
                t.as_u64()
                    .or_else(|| t.as_str().and_then(|x| x.parse().ok()))
            }),
            date_expiry: s("dateExpiry").and_then(|d| datetime::parse(&d)),
        })
    }
}

pub struct Webhooks {
    client: reqwest::Client,
    account_sid: String,
    auth_token: String,
    block_on_error: bool,
    engine: Arc<Engine>,
}

impl Webhooks {
    pub fn new(
        engine: Arc<Engine>,
        account_sid: String,
        auth_token: String,
        timeout: Duration,
        block_on_error: bool,
    ) -> Webhooks {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("maskd/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Webhooks {
            client,
            account_sid,
            auth_token,
            block_on_error,
            engine,
        }
    }

    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// POSTs `params` to `url`, signed; bounded by `webhooks.timeout`.
    pub async fn post(&self, kind: &'static str, url: &str, params: &[(String, String)]) -> Answer {
        let started = Instant::now();
        let req = self
            .client
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header(
                "X-Twilio-Signature",
                signature(&self.auth_token, url, params),
            )
            .body(callback::encode(params));
        // The client's timeout bounds the whole exchange, body included.
        let sent = async {
            let r = req.send().await?;
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = r.bytes().await?;
            Ok::<_, reqwest::Error>((status, ct, body.to_vec()))
        };
        let answer = match sent.await {
            Ok((status, ct, body)) => Answer::Status(status, ct, body),
            Err(e) if e.is_timeout() => Answer::Timeout,
            Err(_) => Answer::Failed,
        };
        let m = crate::metrics::get();
        m.callback_duration
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        m.callbacks
            .with_label_values(&[kind, answer.outcome()])
            .inc();
        let failed = match &answer {
            Answer::Status(code, ..) if (200..300).contains(code) => None,
            // An intercept's 403 is its answer (block), not a failure.
            Answer::Status(403, ..) if kind == "intercept" => None,
            Answer::Status(code, ..) => Some(code.to_string()),
            other => Some(other.outcome().to_string()),
        };
        if let Some(outcome) = failed {
            crate::metrics::recent::callback_failed(
                crate::clock::now_ms() / 1000,
                kind,
                url,
                outcome,
            );
        }
        answer
    }

    /// The intercept callback: 403 blocks; any other answer lets the traffic through; no
    /// answer (timeout, error) follows `webhooks.intercept_on_error`.
    pub async fn intercept(&self, url: &str, params: &[(String, String)]) -> Verdict {
        match self.post("intercept", url, params).await {
            Answer::Status(403, ..) => Verdict::Block,
            Answer::Status(..) => Verdict::Allow,
            Answer::Timeout | Answer::Failed if self.block_on_error => Verdict::Block,
            Answer::Timeout | Answer::Failed => Verdict::Allow,
        }
    }

    /// The out-of-session callback for traffic on `proxy` from `sender` (the standard
    /// inbound fields are in `inbound`). A 2xx JSON answer with `participantIdentifier`
    /// creates the session (the sender keeps the number they dialled) and returns true: the
    /// caller then routes the traffic as if the session had existed.
    pub async fn out_of_session(
        &self,
        proxy: E164,
        sender: E164,
        mut inbound: Vec<(String, String)>,
    ) -> bool {
        // Several nodes: the session may be one another node has just committed.
        if self.engine.store().shared() {
            let engine = self.engine.clone();
            let found = tokio::task::spawn_blocking(move || {
                engine.route_from_store(proxy, sender, crate::clock::now_ms())
            })
            .await;
            if found.unwrap_or(false) {
                return true;
            }
        }
        let Some(ctx) = self.engine.out_of_session(proxy, sender) else {
            return false;
        };
        let Some(url) = ctx.url else { return false };
        if let Some((s, me, other)) = &ctx.recent {
            inbound.extend(callback::session_params(
                s,
                me.as_ref(),
                other.as_ref(),
                &self.account_sid,
            ));
        }
        let answer = self.post("out_of_session", &url, &inbound).await;
        let Answer::Status(code, ct, body) = answer else {
            return false;
        };
        if !(200..300).contains(&code) || !ct.to_ascii_lowercase().contains("application/json") {
            // TwiML answers are out of scope: treated as "no session".
            return false;
        }
        let Some(want) = AutoCreate::from_json(&body) else {
            tracing::warn!("out-of-session answer without participantIdentifier: no session");
            return false;
        };
        let now = crate::clock::now_ms() / 1000;
        let created = self.engine.create_session(
            ctx.service,
            NewSession {
                unique_name: want.unique_name,
                date_expiry: want.date_expiry,
                ttl: want.ttl,
                mode: want.mode,
                status: None,
                participants: vec![
                    NewParticipant {
                        identifier: sender.to_string(),
                        friendly_name: None,
                        proxy_identifier: Some(proxy.to_string()),
                        proxy_identifier_sid: None,
                    },
                    NewParticipant {
                        identifier: want.participant_identifier,
                        friendly_name: None,
                        proxy_identifier: want.participant_proxy_identifier,
                        proxy_identifier_sid: None,
                    },
                ],
                record: None,
            },
            now,
        );
        match created {
            Ok((session, _, durable)) => match durable.await {
                Ok(()) => {
                    tracing::info!(session = %session.sid, "session created by the out-of-session callback");
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "auto-created session not recorded");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "out-of-session answer could not create a session");
                false
            }
        }
    }

    /// Builds a queued status callback's URL and parameters: captured ones, or the
    /// interaction read back from the store with the recorded outbound change applied.
    async fn status_request(&self, item: &CallbackItem) -> Option<(String, Vec<(String, String)>)> {
        let (url, mut params) = match (&item.url, &item.params) {
            (Some(u), Some(p)) => (u.clone(), p.clone()),
            _ => {
                // Everything recorded before this callback is committed once this is.
                self.engine.record(vec![], None).await.ok()?;
                let mut i = self.engine.store().interaction(item.interaction).ok()??;
                if let Some(change) = &item.outbound {
                    callback::apply_outbound(&mut i, change);
                }
                let url = self.engine.service(i.service_sid).ok()?.callback_url?;
                (url, callback::interaction_params(&i, "", true))
            }
        };
        for (k, v) in params.iter_mut() {
            if k == "interactionAccountSid" {
                *v = self.account_sid.clone();
            }
        }
        Some((url, params))
    }
}

/// The standard Twilio inbound webhook fields for the out-of-session callback (reference
/// §4.8.3, part 1). `sms`: (MessageSid, Body, segments); otherwise a call (CallSid).
pub fn inbound_params(
    account: &str,
    from: E164,
    to: E164,
    sms: Option<(&str, &str, u32)>,
    call_sid: Option<&str>,
) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        ("AccountSid", account.to_string()),
        ("ApiVersion", "2010-04-01".to_string()),
        ("From", from.to_string()),
        ("To", to.to_string()),
        (
            "FromCountry",
            from.country().map(|c| c.1).unwrap_or_default().to_string(),
        ),
        (
            "ToCountry",
            to.country().map(|c| c.1).unwrap_or_default().to_string(),
        ),
        ("FromCity", String::new()),
        ("FromState", String::new()),
        ("FromZip", String::new()),
        ("ToCity", String::new()),
        ("ToState", String::new()),
        ("ToZip", String::new()),
        ("Direction", "inbound".to_string()),
        ("AddOns", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some((sid, body, segments)) = sms {
        for (k, v) in [
            ("Body", body.to_string()),
            ("MessageSid", sid.to_string()),
            ("SmsSid", sid.to_string()),
            ("SmsMessageSid", sid.to_string()),
            ("SmsStatus", "received".to_string()),
            ("NumMedia", "0".to_string()),
            ("NumSegments", segments.to_string()),
        ] {
            p.push((k.to_string(), v));
        }
    }
    if let Some(sid) = call_sid {
        for (k, v) in [
            ("CallSid", sid.to_string()),
            ("CallStatus", "ringing".to_string()),
            ("Caller", from.to_string()),
            ("Called", to.to_string()),
        ] {
            p.push((k.to_string(), v));
        }
    }
    p
}

/// The intercept callback's fields for inbound traffic not yet forwarded: the interaction
/// fields without the outbound leg, plus both participants' identifiers (read by
/// third-party code, reference §4.8.2).
pub fn intercept_params(
    account: &str,
    interaction: &crate::core::model::Interaction,
    inbound_identifier: E164,
    outbound_identifier: E164,
) -> Vec<(String, String)> {
    let mut p = callback::interaction_params(interaction, account, false);
    p.push((
        "inboundParticipantIdentifier".to_string(),
        inbound_identifier.to_string(),
    ));
    p.push((
        "outboundParticipantIdentifier".to_string(),
        outbound_identifier.to_string(),
    ));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Order-independent and keyed; Twilio's own validator checks the value itself in
    /// tests/interop/callbacks_flow.py.
    #[test]
    fn signature_sorts_parameters_by_name() {
        let a = signature(
            "tok",
            "https://x.example/cb",
            &[("b".into(), "2".into()), ("a".into(), "1".into())],
        );
        let b = signature(
            "tok",
            "https://x.example/cb",
            &[("a".into(), "1".into()), ("b".into(), "2".into())],
        );
        assert_eq!(a, b);
        assert_ne!(a, signature("tok2", "https://x.example/cb", &[]));
        assert_eq!(a.len(), 28, "base64 of 20 bytes");
    }

    #[test]
    fn auto_create_reads_twilio_json() {
        let a = AutoCreate::from_json(
            br#"{"uniqueName":"auto1","ttl":3360,"mode":"voice-and-message","participantIdentifier":"+14152345555"}"#,
        )
        .unwrap();
        assert_eq!(a.participant_identifier, "+14152345555");
        assert_eq!(a.ttl, Some(3360));
        assert_eq!(a.mode, Some(Mode::VoiceAndMessage));
        assert_eq!(a.unique_name.as_deref(), Some("auto1"));
        assert!(AutoCreate::from_json(br#"{"uniqueName":"x"}"#).is_none());
        assert!(AutoCreate::from_json(b"<Response/>").is_none());
    }
}
