//! SMPP 3.4 PDUs (with the SMPP 5.0 TLVs carriers use) as plain data, and the protocol
//! constants in spec order. No I/O.

/// Command ids (SMPP 3.4 §5.1.2.1).
pub mod cmd {
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    pub const BIND_RECEIVER: u32 = 0x0000_0001;
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    pub const QUERY_SM: u32 = 0x0000_0003;
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    pub const DELIVER_SM: u32 = 0x0000_0005;
    pub const UNBIND: u32 = 0x0000_0006;
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    pub const OUTBIND: u32 = 0x0000_000B;
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    pub const DATA_SM: u32 = 0x0000_0103;
    pub const RESP: u32 = 0x8000_0000;
}

/// command_status values (SMPP 3.4 §5.1.3).
pub mod status {
    pub const ESME_ROK: u32 = 0x0000_0000;
    pub const ESME_RINVMSGLEN: u32 = 0x0000_0001;
    pub const ESME_RINVCMDLEN: u32 = 0x0000_0002;
    pub const ESME_RINVCMDID: u32 = 0x0000_0003;
    pub const ESME_RINVBNDSTS: u32 = 0x0000_0004;
    pub const ESME_RALYBND: u32 = 0x0000_0005;
    pub const ESME_RSYSERR: u32 = 0x0000_0008;
    pub const ESME_RINVSRCADR: u32 = 0x0000_000A;
    pub const ESME_RINVDSTADR: u32 = 0x0000_000B;
    pub const ESME_RINVMSGID: u32 = 0x0000_000C;
    pub const ESME_RBINDFAIL: u32 = 0x0000_000D;
    pub const ESME_RINVPASWD: u32 = 0x0000_000E;
    pub const ESME_RINVSYSID: u32 = 0x0000_000F;
    pub const ESME_RMSGQFUL: u32 = 0x0000_0014;
    pub const ESME_RINVESMCLASS: u32 = 0x0000_0043;
    pub const ESME_RTHROTTLED: u32 = 0x0000_0058;
    pub const ESME_RX_T_APPN: u32 = 0x0000_0064;
    pub const ESME_RX_P_APPN: u32 = 0x0000_0065;
    pub const ESME_RINVTLVSTREAM: u32 = 0x0000_00C0;
    pub const ESME_RINVTLVLEN: u32 = 0x0000_00C2;
    pub const ESME_RUNKNOWNERR: u32 = 0x0000_00FF;
}

/// TLV tags (SMPP 3.4 §5.3.2, SMPP 5.0 §4.8.4).
pub mod tag {
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    pub const USER_MESSAGE_REFERENCE: u16 = 0x0204;
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
    pub const SC_INTERFACE_VERSION: u16 = 0x0210;
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    pub const MESSAGE_STATE: u16 = 0x0427;
}

/// esm_class bits.
pub mod esm {
    /// Message type bits (2–5): 0x04 = SMSC delivery receipt.
    pub const TYPE_MASK: u8 = 0x3C;
    pub const DELIVERY_RECEIPT: u8 = 0x04;
    /// UDH indicator.
    pub const UDHI: u8 = 0x40;
}

/// Largest PDU accepted: a 64 KiB message_payload plus headers. Longer lengths from the
/// wire are refused before anything is sized by them.
pub const MAX_PDU_LEN: u32 = 70_000;
pub const HEADER_LEN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    pub fn command_id(self) -> u32 {
        match self {
            BindKind::Transmitter => cmd::BIND_TRANSMITTER,
            BindKind::Receiver => cmd::BIND_RECEIVER,
            BindKind::Transceiver => cmd::BIND_TRANSCEIVER,
        }
    }
    /// May this bind submit messages to maskd?
    pub fn can_send(self) -> bool {
        !matches!(self, BindKind::Receiver)
    }
    /// May maskd deliver messages on this bind?
    pub fn can_receive(self) -> bool {
        !matches!(self, BindKind::Transmitter)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            BindKind::Transmitter => "transmitter",
            BindKind::Receiver => "receiver",
            BindKind::Transceiver => "transceiver",
        }
    }
    pub fn parse(s: &str) -> Option<BindKind> {
        match s {
            "transmitter" => Some(BindKind::Transmitter),
            "receiver" => Some(BindKind::Receiver),
            "transceiver" => Some(BindKind::Transceiver),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tlv {
    pub tag: u16,
    pub value: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Address {
    pub ton: u8,
    pub npi: u8,
    pub addr: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub kind: BindKind,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub interface_version: u8,
    pub addr_ton: u8,
    pub addr_npi: u8,
    pub address_range: String,
}

/// submit_sm and deliver_sm share one body layout.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ShortMessage {
    pub service_type: String,
    pub source: Address,
    pub dest: Address,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub replace_if_present: u8,
    pub data_coding: u8,
    pub sm_default_msg_id: u8,
    pub short_message: Vec<u8>,
    pub tlvs: Vec<Tlv>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DataSm {
    pub service_type: String,
    pub source: Address,
    pub dest: Address,
    pub esm_class: u8,
    pub registered_delivery: u8,
    pub data_coding: u8,
    pub tlvs: Vec<Tlv>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Bind(Bind),
    BindResp {
        kind: BindKind,
        system_id: String,
        tlvs: Vec<Tlv>,
    },
    Outbind {
        system_id: String,
        password: String,
    },
    Unbind,
    UnbindResp,
    GenericNack,
    EnquireLink,
    EnquireLinkResp,
    SubmitSm(ShortMessage),
    SubmitSmResp {
        message_id: String,
    },
    DeliverSm(ShortMessage),
    DeliverSmResp {
        message_id: String,
    },
    DataSm(DataSm),
    DataSmResp {
        message_id: String,
        tlvs: Vec<Tlv>,
    },
    QuerySm {
        message_id: String,
        source: Address,
    },
    QuerySmResp {
        message_id: String,
        final_date: String,
        message_state: u8,
        error_code: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    pub seq: u32,
    pub status: u32,
    pub body: Body,
}

impl Body {
    pub fn command_id(&self) -> u32 {
        match self {
            Body::Bind(b) => b.kind.command_id(),
            Body::BindResp { kind, .. } => kind.command_id() | cmd::RESP,
            Body::Outbind { .. } => cmd::OUTBIND,
            Body::Unbind => cmd::UNBIND,
            Body::UnbindResp => cmd::UNBIND | cmd::RESP,
            Body::GenericNack => cmd::GENERIC_NACK,
            Body::EnquireLink => cmd::ENQUIRE_LINK,
            Body::EnquireLinkResp => cmd::ENQUIRE_LINK | cmd::RESP,
            Body::SubmitSm(_) => cmd::SUBMIT_SM,
            Body::SubmitSmResp { .. } => cmd::SUBMIT_SM | cmd::RESP,
            Body::DeliverSm(_) => cmd::DELIVER_SM,
            Body::DeliverSmResp { .. } => cmd::DELIVER_SM | cmd::RESP,
            Body::DataSm(_) => cmd::DATA_SM,
            Body::DataSmResp { .. } => cmd::DATA_SM | cmd::RESP,
            Body::QuerySm { .. } => cmd::QUERY_SM,
            Body::QuerySmResp { .. } => cmd::QUERY_SM | cmd::RESP,
        }
    }

    /// A bounded metric label for this command.
    pub fn name(&self) -> &'static str {
        command_name(self.command_id())
    }
}

/// A bounded metric label for a command id.
pub fn command_name(id: u32) -> &'static str {
    match id {
        cmd::GENERIC_NACK => "generic_nack",
        cmd::BIND_RECEIVER => "bind_receiver",
        cmd::BIND_TRANSMITTER => "bind_transmitter",
        cmd::BIND_TRANSCEIVER => "bind_transceiver",
        cmd::QUERY_SM => "query_sm",
        cmd::SUBMIT_SM => "submit_sm",
        cmd::DELIVER_SM => "deliver_sm",
        cmd::UNBIND => "unbind",
        cmd::OUTBIND => "outbind",
        cmd::ENQUIRE_LINK => "enquire_link",
        cmd::DATA_SM => "data_sm",
        x if x == cmd::BIND_RECEIVER | cmd::RESP => "bind_receiver_resp",
        x if x == cmd::BIND_TRANSMITTER | cmd::RESP => "bind_transmitter_resp",
        x if x == cmd::BIND_TRANSCEIVER | cmd::RESP => "bind_transceiver_resp",
        x if x == cmd::QUERY_SM | cmd::RESP => "query_sm_resp",
        x if x == cmd::SUBMIT_SM | cmd::RESP => "submit_sm_resp",
        x if x == cmd::DELIVER_SM | cmd::RESP => "deliver_sm_resp",
        x if x == cmd::UNBIND | cmd::RESP => "unbind_resp",
        x if x == cmd::ENQUIRE_LINK | cmd::RESP => "enquire_link_resp",
        x if x == cmd::DATA_SM | cmd::RESP => "data_sm_resp",
        _ => "unknown",
    }
}

/// A bounded metric label for a command_status.
pub fn status_name(s: u32) -> &'static str {
    match s {
        status::ESME_ROK => "ESME_ROK",
        status::ESME_RINVMSGLEN => "ESME_RINVMSGLEN",
        status::ESME_RINVCMDLEN => "ESME_RINVCMDLEN",
        status::ESME_RINVCMDID => "ESME_RINVCMDID",
        status::ESME_RINVBNDSTS => "ESME_RINVBNDSTS",
        status::ESME_RALYBND => "ESME_RALYBND",
        status::ESME_RSYSERR => "ESME_RSYSERR",
        status::ESME_RINVSRCADR => "ESME_RINVSRCADR",
        status::ESME_RINVDSTADR => "ESME_RINVDSTADR",
        status::ESME_RINVMSGID => "ESME_RINVMSGID",
        status::ESME_RBINDFAIL => "ESME_RBINDFAIL",
        status::ESME_RINVPASWD => "ESME_RINVPASWD",
        status::ESME_RINVSYSID => "ESME_RINVSYSID",
        status::ESME_RMSGQFUL => "ESME_RMSGQFUL",
        status::ESME_RTHROTTLED => "ESME_RTHROTTLED",
        status::ESME_RX_T_APPN => "ESME_RX_T_APPN",
        status::ESME_RX_P_APPN => "ESME_RX_P_APPN",
        status::ESME_RINVTLVSTREAM => "ESME_RINVTLVSTREAM",
        status::ESME_RINVTLVLEN => "ESME_RINVTLVLEN",
        _ => "other",
    }
}

impl ShortMessage {
    pub fn tlv(&self, tag: u16) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.tag == tag)
            .map(|t| t.value.as_slice())
    }
    /// The message octets: `message_payload` when present, else `short_message`.
    pub fn payload(&self) -> &[u8] {
        self.tlv(tag::MESSAGE_PAYLOAD)
            .unwrap_or(&self.short_message)
    }
    pub fn is_receipt(&self) -> bool {
        self.esm_class & esm::TYPE_MASK == esm::DELIVERY_RECEIPT
    }
}
