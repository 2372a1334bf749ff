//! The engine's refusals, each carrying the Twilio error code it answers with. The API maps
//! them to HTTP statuses and error JSON; the data planes map them to SIP/SMPP answers.

use super::allocator::AllocError;
use super::store::StoreError;

/// The kind of resource a lookup missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Service,
    PhoneNumber,
    Session,
    Participant,
    Interaction,
    Key,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Service => "Service",
            Resource::PhoneNumber => "PhoneNumber",
            Resource::Session => "Session",
            Resource::Participant => "Participant",
            Resource::Interaction => "Interaction",
            Resource::Key => "Key",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreError {
    #[error("The requested {} resource was not found", .0.as_str())]
    NotFound(Resource),
    #[error("Session with the unique name not found")]
    SessionNameNotFound,
    #[error("{0}")]
    Alloc(#[from] AllocError),
    #[error("Service UniqueName must be unique")]
    ServiceNameTaken,
    #[error("Session UniqueName must be unique")]
    SessionNameTaken,
    #[error("Participant is already in the Session")]
    ParticipantInSession,
    #[error("A Session can have at most 2 participants")]
    TooManyParticipants,
    #[error("Identifier is not a valid E.164 phone number: {0}")]
    InvalidIdentifier(super::e164::E164Error),
    #[error(
        "Participant with this identifier was removed from the Session and cannot be added back"
    )]
    DuplicateEntry,
    #[error("Session is closed and cannot be updated")]
    SessionClosed,
    #[error("Session status transition from {from} to {to} is invalid")]
    StatusInvalid {
        from: &'static str,
        to: &'static str,
    },
    #[error("Phone number is already in another Service")]
    NumberInOtherService,
    #[error("Phone number is already in this Service")]
    NumberInService,
    #[error("Phone number is used by active sessions; reserve it and let them close first")]
    NumberInUse,
    #[error("Phone number SID not found")]
    NumberSidNotFound,
    #[error("Cannot send a message in a voice-only session")]
    MessageToVoiceOnly,
    #[error("'{param}' is invalid: {reason}")]
    Invalid { param: &'static str, reason: String },
    #[error("storage operation failed: {0}")]
    Store(#[from] StoreError),
}

impl CoreError {
    pub fn invalid(param: &'static str, reason: impl Into<String>) -> Self {
        CoreError::Invalid {
            param,
            reason: reason.into(),
        }
    }

    /// Twilio's error code for this refusal.
    pub fn code(&self) -> u32 {
        match self {
            CoreError::NotFound(_) => 20404,
            CoreError::SessionNameNotFound => 80308,
            CoreError::Alloc(a) => a.code(),
            CoreError::ServiceNameTaken => 80602,
            CoreError::SessionNameTaken => 80603,
            CoreError::ParticipantInSession => 80103,
            CoreError::TooManyParticipants => 80609,
            CoreError::InvalidIdentifier(_) => 80404,
            CoreError::DuplicateEntry => 80612,
            CoreError::SessionClosed => 80607,
            CoreError::StatusInvalid { .. } => 80608,
            CoreError::NumberInOtherService => 80101,
            CoreError::NumberInService => 80104,
            CoreError::NumberInUse => 80611,
            CoreError::NumberSidNotFound => 80301,
            CoreError::MessageToVoiceOnly => 80910,
            CoreError::Invalid { .. } => 80701,
            CoreError::Store(StoreError::Unavailable(_)) => 20503,
            CoreError::Store(_) => 80501,
        }
    }
}
