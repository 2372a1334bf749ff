//! The call's interaction: one voice interaction per call, whose legs move through
//! initiated → ringing → in-progress → completed (or busy, no-answer, failed, canceled),
//! written behind the call through the core's group commit.

use super::{B2bua, Core, Ctx};
use crate::core::model::{Interaction, InteractionType, Leg, ResourceStatus, Text};
use crate::core::routing::Target;
use crate::core::store::WriteOp;
use crate::core::{Sid, SidKind};

/// Texts every call's interaction starts with, shared (not allocated per call).
static CALL: std::sync::LazyLock<Text> = std::sync::LazyLock::new(|| "Call".into());
static NO_DATA: std::sync::LazyLock<Text> = std::sync::LazyLock::new(|| "{}".into());

/// A new voice interaction for a call on `t` (its SID decided earlier when an intercept
/// callback already named it).
pub(super) fn voice_interaction(
    t: &Target,
    sid: Option<Sid>,
    now_s: i64,
    core: &dyn Core,
) -> Interaction {
    let leg = |participant, status| Leg {
        participant_sid: Some(participant),
        resource_sid: Some(Sid::generate(SidKind::Call).text()),
        resource_status: Some(status),
        resource_type: Some(CALL.clone()),
        resource_url: None,
    };
    Interaction {
        sid: sid.unwrap_or_else(|| Sid::generate(SidKind::Interaction)),
        seq: core.next_seq(),
        session_sid: t.session,
        service_sid: t.service,
        data: NO_DATA.clone(),
        kind: InteractionType::Voice,
        inbound: leg(t.participant, ResourceStatus::InProgress),
        outbound: leg(t.counterpart, ResourceStatus::Initiated),
        message_participant_sid: None,
        date_created: now_s,
        date_updated: now_s,
    }
}

impl B2bua {
    /// Moves the call's outbound leg (and, if given, its inbound leg) to a new status.
    pub(super) fn set_leg(
        &mut self,
        id: u64,
        status: ResourceStatus,
        inbound: Option<ResourceStatus>,
        cx: &mut Ctx,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.interaction.outbound.resource_status = Some(status);
        if let Some(s) = inbound {
            c.interaction.inbound.resource_status = Some(s);
        }
        c.interaction.date_updated = cx.now_s();
        cx.core
            .record(vec![WriteOp::PutInteraction(c.interaction.clone())], None);
    }

    /// Logs an answered call's end: both legs completed, the duration in `data`.
    pub(super) fn log_completed(&mut self, id: u64, cx: &mut Ctx) {
        let duration = self
            .calls
            .get(&id)
            .and_then(|c| c.answered_at)
            .map_or(0, |t| cx.now.saturating_sub(t) / 1000);
        if let Some(c) = self.calls.get_mut(&id) {
            c.interaction.data = serde_json::json!({ "duration": duration.to_string() })
                .to_string()
                .into();
        }
        self.set_leg(
            id,
            ResourceStatus::Completed,
            Some(ResourceStatus::Completed),
            cx,
        );
    }
}
