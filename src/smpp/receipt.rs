//! Delivery receipts: reading them (the `receipted_message_id`/`message_state` TLVs, or the
//! de-facto `id:… stat:…` text of SMPP 3.4 Appendix B) and writing maskd's own.

use super::pdu::{tag, ShortMessage};

/// What a receipt says about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    /// `DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`, `ACCEPTD`, `UNKNOWN`, `DELETED`, `ENROUTE`.
    pub stat: String,
    /// The text's `submit date:` (`YYMMDDhhmm`, or with seconds), when it has one.
    pub submit_date: Option<String>,
}

/// message_state values (SMPP 3.4 §5.2.28) as receipt stat words.
fn state_word(state: u8) -> &'static str {
    match state {
        1 => "ENROUTE",
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        8 => "REJECTD",
        _ => "UNKNOWN",
    }
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    Some(rest.split(' ').next().unwrap_or(rest))
}

/// Parses a receipt from a deliver_sm whose esm_class marks it as one.
pub fn parse(m: &ShortMessage) -> Option<Receipt> {
    let text = String::from_utf8_lossy(m.payload()).to_string();
    let id_tlv = m
        .tlv(tag::RECEIPTED_MESSAGE_ID)
        .map(|v| String::from_utf8_lossy(v.split(|&b| b == 0).next().unwrap_or(v)).to_string())
        .filter(|s| !s.is_empty());
    let message_id = id_tlv.or_else(|| field(&text, "id:").map(str::to_string))?;
    let stat = match m.tlv(tag::MESSAGE_STATE) {
        Some([s]) => state_word(*s).to_string(),
        _ => field(&text, "stat:").unwrap_or("UNKNOWN").to_string(),
    };
    let submit_date = field(&text, "submit date:")
        .filter(|d| matches!(d.len(), 10 | 12) && d.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string);
    Some(Receipt {
        message_id,
        stat,
        submit_date,
    })
}

/// The receipt text maskd sends for its own message id.
pub fn text(message_id: &str, stat: &str, submit: &str, done: &str) -> String {
    let err = if stat == "DELIVRD" { "000" } else { "001" };
    let dlvrd = if stat == "DELIVRD" { "001" } else { "000" };
    format!("id:{message_id} sub:001 dlvrd:{dlvrd} submit date:{submit} done date:{done} stat:{stat} err:{err} text:")
}

pub fn state_of(stat: &str) -> u8 {
    match stat {
        "ENROUTE" => 1,
        "DELIVRD" => 2,
        "EXPIRED" => 3,
        "DELETED" => 4,
        "UNDELIV" => 5,
        "ACCEPTD" => 6,
        "REJECTD" => 8,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_id_stat_and_submit_date() {
        let m = ShortMessage {
            esm_class: 0x04,
            short_message: text("SM1", "DELIVRD", "2611240000", "2611240001").into_bytes(),
            ..ShortMessage::default()
        };
        let r = parse(&m).unwrap();
        assert_eq!((r.message_id.as_str(), r.stat.as_str()), ("SM1", "DELIVRD"));
        assert_eq!(r.submit_date.as_deref(), Some("2611240000"));
        let bare = ShortMessage {
            short_message: b"id:X stat:UNDELIV".to_vec(),
            ..ShortMessage::default()
        };
        assert_eq!(parse(&bare).unwrap().submit_date, None);
    }
}
