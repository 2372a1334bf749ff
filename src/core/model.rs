//! The domain: Service, PhoneNumber, Session, Participant, Interaction, and their enums
//! with the exact wire spellings of Twilio Proxy v1. Plain data; no I/O.

use super::e164::E164;
use super::sid::Sid;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The value as Twilio spells it on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Parses the wire spelling (case-insensitive).
            pub fn parse(text: &str) -> Option<Self> {
                $(if text.eq_ignore_ascii_case($text) { return Some($name::$variant); })+
                None
            }
        }
    };
}

wire_enum!(
    /// How close to the participant's number a proxy number must be.
    GeoMatchLevel { AreaCode = "area-code", Overlay = "overlay", Radius = "radius", Country = "country" }
);
wire_enum!(
    /// Whether to reuse the number a person had before.
    NumberSelection { AvoidSticky = "avoid-sticky", PreferSticky = "prefer-sticky" }
);
wire_enum!(
    SessionStatus { Open = "open", InProgress = "in-progress", Closed = "closed", Failed = "failed", Unknown = "unknown" }
);
wire_enum!(
    /// Which kinds of traffic a session carries.
    Mode { MessageOnly = "message-only", VoiceOnly = "voice-only", VoiceAndMessage = "voice-and-message" }
);
wire_enum!(
    /// Why a session closed; `None` is the empty string Twilio shows while open.
    ClosedReason { None = "", Api = "api", Ttl = "ttl", Expiry = "expiry" }
);
wire_enum!(
    InteractionType { Message = "message", Voice = "voice", Unknown = "unknown" }
);
wire_enum!(
    /// Status of one leg of an interaction (Twilio's 21-value resource status enum).
    ResourceStatus {
        Accepted = "accepted", Answered = "answered", Busy = "busy", Canceled = "canceled",
        Completed = "completed", Deleted = "deleted", Delivered = "delivered",
        DeliveryUnknown = "delivery-unknown", Failed = "failed", InProgress = "in-progress",
        Initiated = "initiated", NoAnswer = "no-answer", Queued = "queued", Received = "received",
        Receiving = "receiving", Ringing = "ringing", Scheduled = "scheduled", Sending = "sending",
        Sent = "sent", Undelivered = "undelivered", Unknown = "unknown",
    }
);

impl SessionStatus {
    /// Open and in-progress sessions reserve their route keys and route traffic.
    pub fn is_active(self) -> bool {
        matches!(self, SessionStatus::Open | SessionStatus::InProgress)
    }
}

impl Mode {
    pub fn allows_messages(self) -> bool {
        !matches!(self, Mode::VoiceOnly)
    }
    pub fn allows_voice(self) -> bool {
        !matches!(self, Mode::MessageOnly)
    }
}

/// Times are Unix seconds (UTC).
pub type Timestamp = i64;

#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub sid: Sid,
    pub seq: u64,
    pub unique_name: String,
    pub callback_url: Option<String>,
    pub default_ttl: u64,
    pub geo_match_level: GeoMatchLevel,
    pub number_selection_behavior: NumberSelection,
    pub intercept_callback_url: Option<String>,
    pub out_of_session_callback_url: Option<String>,
    pub chat_instance_sid: Option<String>,
    /// Seconds a route key stays unassignable to a different counterpart after its
    /// session closes (maskd extension; 0 = off).
    pub cooloff: u64,
    /// Answered calls of this service's sessions are recorded (config `services[].record`;
    /// maskd extension, not on the wire).
    pub record: bool,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PhoneNumber {
    pub sid: Sid,
    pub seq: u64,
    pub service_sid: Sid,
    pub number: E164,
    pub friendly_name: String,
    pub is_reserved: bool,
    /// The carrier this number leaves by, tagged over the API (a maskd extension): wins
    /// over `carriers[].numbers`.
    pub carrier: Option<String>,
    /// Active, non-deleted participants using this number (derived, not stored).
    pub in_use: u32,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub sid: Sid,
    pub seq: u64,
    pub service_sid: Sid,
    pub unique_name: Option<String>,
    pub status: SessionStatus,
    pub mode: Mode,
    pub ttl: u64,
    pub date_expiry: Option<Timestamp>,
    pub date_started: Option<Timestamp>,
    pub date_ended: Option<Timestamp>,
    pub date_last_interaction: Option<Timestamp>,
    pub closed_reason: ClosedReason,
    /// Per-session recording override (maskd extension `Record`); `None`: the service's.
    pub record: Option<bool>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

impl Session {
    /// When this session is due to close, given its last activity (Unix ms), if ever.
    /// `date_expiry` overrides `ttl`; `ttl` counts from the last interaction or creation.
    pub fn deadline_ms(&self, last_activity_ms: i64) -> Option<(i64, ClosedReason)> {
        if let Some(at) = self.date_expiry {
            return Some((at.saturating_mul(1000), ClosedReason::Expiry));
        }
        if self.ttl > 0 {
            let ttl_ms = i64::try_from(self.ttl.saturating_mul(1000)).unwrap_or(i64::MAX);
            return Some((last_activity_ms.saturating_add(ttl_ms), ClosedReason::Ttl));
        }
        None
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Participant {
    pub sid: Sid,
    pub seq: u64,
    pub session_sid: Sid,
    pub service_sid: Sid,
    pub identifier: E164,
    pub friendly_name: Option<String>,
    pub proxy: E164,
    pub proxy_sid: Sid,
    pub date_deleted: Option<Timestamp>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

/// Shared text: an interaction is copied at every change of a call's status (to the store,
/// to callbacks), and a copy of this is a count, not an allocation.
pub type Text = std::sync::Arc<str>;

/// One leg of an interaction.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Leg {
    pub participant_sid: Option<Sid>,
    pub resource_sid: Option<Text>,
    pub resource_status: Option<ResourceStatus>,
    pub resource_type: Option<Text>,
    pub resource_url: Option<Text>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Interaction {
    pub sid: Sid,
    pub seq: u64,
    pub session_sid: Sid,
    pub service_sid: Sid,
    /// JSON text, e.g. `{"body":"hello"}`.
    pub data: Text,
    pub kind: InteractionType,
    pub inbound: Leg,
    pub outbound: Leg,
    /// Set for interactions created through MessageInteractions (the target participant).
    pub message_participant_sid: Option<Sid>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

wire_enum!(
    /// A recording's state as maskd keeps it. `failed` (the file could not be written) is
    /// maskd's own; the 2010 API shows it as `absent` with its `error_code`.
    RecordingStatus { InProgress = "in-progress", Completed = "completed", Absent = "absent", Failed = "failed" }
);

/// One recorded call (Twilio's 2010-04-01 Recording resource).
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    pub sid: Sid,
    /// Creation order (engine sequence number): the listing's order and page tokens.
    pub seq: u64,
    pub session_sid: Sid,
    pub service_sid: Sid,
    /// The call leg the recording belongs to (`CA…`).
    pub call_sid: String,
    pub status: RecordingStatus,
    /// Unix milliseconds when recording started (the answer).
    pub start_ms: i64,
    /// Whole seconds, once finished; `None` while in progress.
    pub duration: Option<u64>,
    /// Why it is absent or failed: a code for the API and a reason for operators.
    pub error_code: Option<u32>,
    pub reason: Option<String>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

/// An API key (Twilio's 2010-04-01 Key resource): basic auth `SK…:secret` on every API path.
/// Only a salted hash of the secret is kept (a PHC string, argon2id); the secret is shown
/// once, when the key is made.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKey {
    pub sid: Sid,
    /// Creation order (the listing's order and page tokens).
    pub seq: u64,
    pub friendly_name: String,
    pub secret_hash: String,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}
