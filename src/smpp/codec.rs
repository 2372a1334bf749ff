//! Sans-IO SMPP framing and PDU codec. `decode` returns a PDU and the bytes it used, "need
//! more bytes", or an error that carries the command_status to answer with and whether the
//! stream can still be framed. Every length read from the wire is checked against what is
//! actually there before it sizes anything; nothing here panics on input.

use super::pdu::*;

/// Why bytes are not a valid PDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} (command_status {status:#010x})")]
pub struct DecodeError {
    /// The command_status to answer with.
    pub status: u32,
    pub command_id: u32,
    pub seq: u32,
    /// Bytes to skip to reach the next PDU; `None` when framing is lost (close after the nack).
    pub skip: Option<usize>,
    pub what: &'static str,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

type FieldResult<T> = Result<T, (u32, &'static str)>;

impl<'a> Reader<'a> {
    fn u8(&mut self) -> FieldResult<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or((status::ESME_RINVCMDLEN, "body ends inside a field"))?;
        self.pos += 1;
        Ok(b)
    }
    fn u16(&mut self) -> FieldResult<u16> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn bytes(&mut self, n: usize, err: u32) -> FieldResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or((err, "length runs past the PDU"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    /// A C-Octet string of at most `max` octets including the NUL.
    fn cstr(&mut self, max: usize, err: u32) -> FieldResult<String> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        let n = rest
            .iter()
            .take(max)
            .position(|&c| c == 0)
            .ok_or((err, "string without NUL within its maximum length"))?;
        let s = std::str::from_utf8(&rest[..n])
            .map_err(|_| (err, "string is not text"))?
            .to_string();
        self.pos += n + 1;
        Ok(s)
    }
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn tlvs(&mut self) -> FieldResult<Vec<Tlv>> {
        let mut out = Vec::new();
        while !self.done() {
            if self.buf.len() - self.pos < 4 {
                return Err((status::ESME_RINVTLVSTREAM, "truncated TLV header"));
            }
            let tag = self.u16()?;
            let len = self.u16()? as usize;
            let value = self.bytes(len, status::ESME_RINVTLVLEN)?.to_vec();
            out.push(Tlv { tag, value });
        }
        Ok(out)
    }
    fn address(&mut self, max: usize, err: u32) -> FieldResult<Address> {
        Ok(Address {
            ton: self.u8()?,
            npi: self.u8()?,
            addr: self.cstr(max, err)?,
        })
    }
}

/// Decodes one PDU from the front of `buf`. `Ok(None)`: need more bytes.
pub fn decode(buf: &[u8]) -> Result<Option<(Pdu, usize)>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let command_id = buf
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let seq = buf
        .get(12..16)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    if !(HEADER_LEN as u32..=MAX_PDU_LEN).contains(&len) {
        return Err(DecodeError {
            status: status::ESME_RINVCMDLEN,
            command_id,
            seq,
            skip: None,
            what: "command_length out of range",
        });
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let command_status = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let mut r = Reader {
        buf: &buf[HEADER_LEN..len],
        pos: 0,
    };
    let fail = |(status, what): (u32, &'static str)| DecodeError {
        status,
        command_id,
        seq,
        skip: Some(len),
        what,
    };
    let body = decode_body(command_id, &mut r).map_err(fail)?;
    if !r.done() {
        return Err(fail((status::ESME_RINVCMDLEN, "bytes left after the body")));
    }
    Ok(Some((
        Pdu {
            seq,
            status: command_status,
            body,
        },
        len,
    )))
}

fn bind_kind(id: u32) -> Option<BindKind> {
    match id & !cmd::RESP {
        cmd::BIND_TRANSMITTER => Some(BindKind::Transmitter),
        cmd::BIND_RECEIVER => Some(BindKind::Receiver),
        cmd::BIND_TRANSCEIVER => Some(BindKind::Transceiver),
        _ => None,
    }
}

fn short_message(r: &mut Reader<'_>) -> FieldResult<ShortMessage> {
    let service_type = r.cstr(6, status::ESME_RUNKNOWNERR)?;
    let source = r.address(21, status::ESME_RINVSRCADR)?;
    let dest = r.address(21, status::ESME_RINVDSTADR)?;
    let esm_class = r.u8()?;
    let protocol_id = r.u8()?;
    let priority_flag = r.u8()?;
    let schedule_delivery_time = r.cstr(17, status::ESME_RUNKNOWNERR)?;
    let validity_period = r.cstr(17, status::ESME_RUNKNOWNERR)?;
    let registered_delivery = r.u8()?;
    let replace_if_present = r.u8()?;
    let data_coding = r.u8()?;
    let sm_default_msg_id = r.u8()?;
    let sm_length = r.u8()? as usize;
    if sm_length > 254 {
        // SMPP 3.4 §5.2.21: at most 254 octets; longer texts go in message_payload.
        return Err((status::ESME_RINVMSGLEN, "sm_length over 254"));
    }
    let short_message = r.bytes(sm_length, status::ESME_RINVMSGLEN)?.to_vec();
    let tlvs = r.tlvs()?;
    Ok(ShortMessage {
        service_type,
        source,
        dest,
        esm_class,
        protocol_id,
        priority_flag,
        schedule_delivery_time,
        validity_period,
        registered_delivery,
        replace_if_present,
        data_coding,
        sm_default_msg_id,
        short_message,
        tlvs,
    })
}

fn decode_body(id: u32, r: &mut Reader<'_>) -> FieldResult<Body> {
    Ok(match id {
        cmd::BIND_TRANSMITTER | cmd::BIND_RECEIVER | cmd::BIND_TRANSCEIVER => Body::Bind(Bind {
            kind: bind_kind(id).ok_or((status::ESME_RINVCMDID, "unknown bind"))?,
            system_id: r.cstr(16, status::ESME_RINVSYSID)?,
            password: r.cstr(9, status::ESME_RINVPASWD)?,
            system_type: r.cstr(13, status::ESME_RBINDFAIL)?,
            interface_version: r.u8()?,
            addr_ton: r.u8()?,
            addr_npi: r.u8()?,
            address_range: r.cstr(41, status::ESME_RBINDFAIL)?,
        }),
        x if bind_kind(x).is_some() && x & cmd::RESP != 0 => {
            // A failed bind_resp may carry no body at all.
            let system_id = if r.done() {
                String::new()
            } else {
                r.cstr(16, status::ESME_RINVSYSID)?
            };
            Body::BindResp {
                kind: bind_kind(x).ok_or((status::ESME_RINVCMDID, "unknown bind"))?,
                system_id,
                tlvs: r.tlvs()?,
            }
        }
        cmd::OUTBIND => Body::Outbind {
            system_id: r.cstr(16, status::ESME_RINVSYSID)?,
            password: r.cstr(9, status::ESME_RINVPASWD)?,
        },
        cmd::UNBIND => Body::Unbind,
        x if x == cmd::UNBIND | cmd::RESP => Body::UnbindResp,
        cmd::GENERIC_NACK => Body::GenericNack,
        cmd::ENQUIRE_LINK => Body::EnquireLink,
        x if x == cmd::ENQUIRE_LINK | cmd::RESP => Body::EnquireLinkResp,
        cmd::SUBMIT_SM => Body::SubmitSm(short_message(r)?),
        cmd::DELIVER_SM => Body::DeliverSm(short_message(r)?),
        x if x == cmd::SUBMIT_SM | cmd::RESP => Body::SubmitSmResp {
            message_id: if r.done() {
                String::new()
            } else {
                r.cstr(65, status::ESME_RINVMSGID)?
            },
        },
        x if x == cmd::DELIVER_SM | cmd::RESP => Body::DeliverSmResp {
            message_id: if r.done() {
                String::new()
            } else {
                r.cstr(65, status::ESME_RINVMSGID)?
            },
        },
        cmd::DATA_SM => Body::DataSm(DataSm {
            service_type: r.cstr(6, status::ESME_RUNKNOWNERR)?,
            source: r.address(65, status::ESME_RINVSRCADR)?,
            dest: r.address(65, status::ESME_RINVDSTADR)?,
            esm_class: r.u8()?,
            registered_delivery: r.u8()?,
            data_coding: r.u8()?,
            tlvs: r.tlvs()?,
        }),
        x if x == cmd::DATA_SM | cmd::RESP => Body::DataSmResp {
            message_id: if r.done() {
                String::new()
            } else {
                r.cstr(65, status::ESME_RINVMSGID)?
            },
            tlvs: r.tlvs()?,
        },
        cmd::QUERY_SM => Body::QuerySm {
            message_id: r.cstr(65, status::ESME_RINVMSGID)?,
            source: r.address(21, status::ESME_RINVSRCADR)?,
        },
        x if x == cmd::QUERY_SM | cmd::RESP => Body::QuerySmResp {
            message_id: r.cstr(65, status::ESME_RINVMSGID)?,
            final_date: r.cstr(17, status::ESME_RUNKNOWNERR)?,
            message_state: r.u8()?,
            error_code: r.u8()?,
        },
        _ => return Err((status::ESME_RINVCMDID, "unknown command_id")),
    })
}

fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn put_tlvs(out: &mut Vec<u8>, tlvs: &[Tlv]) {
    for t in tlvs {
        out.extend_from_slice(&t.tag.to_be_bytes());
        // Values longer than a TLV can say are cut at 65535 octets.
        let len = t.value.len().min(u16::MAX as usize);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&t.value[..len]);
    }
}

fn put_address(out: &mut Vec<u8>, a: &Address) {
    out.push(a.ton);
    out.push(a.npi);
    put_cstr(out, &a.addr);
}

fn put_sm(out: &mut Vec<u8>, m: &ShortMessage) {
    put_cstr(out, &m.service_type);
    put_address(out, &m.source);
    put_address(out, &m.dest);
    out.extend_from_slice(&[m.esm_class, m.protocol_id, m.priority_flag]);
    put_cstr(out, &m.schedule_delivery_time);
    put_cstr(out, &m.validity_period);
    out.extend_from_slice(&[
        m.registered_delivery,
        m.replace_if_present,
        m.data_coding,
        m.sm_default_msg_id,
    ]);
    let len = m.short_message.len().min(254);
    out.push(len as u8);
    out.extend_from_slice(&m.short_message[..len]);
    put_tlvs(out, &m.tlvs);
}

/// Appends the wire form of `pdu` to `out`.
pub fn encode(pdu: &Pdu, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&pdu.body.command_id().to_be_bytes());
    out.extend_from_slice(&pdu.status.to_be_bytes());
    out.extend_from_slice(&pdu.seq.to_be_bytes());
    match &pdu.body {
        Body::Bind(b) => {
            put_cstr(out, &b.system_id);
            put_cstr(out, &b.password);
            put_cstr(out, &b.system_type);
            out.extend_from_slice(&[b.interface_version, b.addr_ton, b.addr_npi]);
            put_cstr(out, &b.address_range);
        }
        Body::BindResp {
            system_id, tlvs, ..
        } => {
            put_cstr(out, system_id);
            put_tlvs(out, tlvs);
        }
        Body::Outbind {
            system_id,
            password,
        } => {
            put_cstr(out, system_id);
            put_cstr(out, password);
        }
        Body::Unbind
        | Body::UnbindResp
        | Body::GenericNack
        | Body::EnquireLink
        | Body::EnquireLinkResp => {}
        Body::SubmitSm(m) | Body::DeliverSm(m) => put_sm(out, m),
        Body::SubmitSmResp { message_id } | Body::DeliverSmResp { message_id } => {
            put_cstr(out, message_id)
        }
        Body::DataSm(d) => {
            put_cstr(out, &d.service_type);
            put_address(out, &d.source);
            put_address(out, &d.dest);
            out.extend_from_slice(&[d.esm_class, d.registered_delivery, d.data_coding]);
            put_tlvs(out, &d.tlvs);
        }
        Body::DataSmResp { message_id, tlvs } => {
            put_cstr(out, message_id);
            put_tlvs(out, tlvs);
        }
        Body::QuerySm { message_id, source } => {
            put_cstr(out, message_id);
            put_address(out, source);
        }
        Body::QuerySmResp {
            message_id,
            final_date,
            message_state,
            error_code,
        } => {
            put_cstr(out, message_id);
            put_cstr(out, final_date);
            out.extend_from_slice(&[*message_state, *error_code]);
        }
    }
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// The answer to a request that could not be decoded: its `_resp` with the error status
/// when the command is a known request, else `generic_nack`.
pub fn error_response(e: &DecodeError) -> Pdu {
    let body = match e.command_id {
        // Framing lost: the command cannot be trusted.
        _ if e.skip.is_none() => Body::GenericNack,
        cmd::SUBMIT_SM => Body::SubmitSmResp {
            message_id: String::new(),
        },
        cmd::DELIVER_SM => Body::DeliverSmResp {
            message_id: String::new(),
        },
        cmd::DATA_SM => Body::DataSmResp {
            message_id: String::new(),
            tlvs: Vec::new(),
        },
        id if e.skip.is_some() && bind_kind(id).is_some() && id & cmd::RESP == 0 => {
            Body::BindResp {
                kind: bind_kind(id).unwrap_or(BindKind::Transceiver),
                system_id: String::new(),
                tlvs: Vec::new(),
            }
        }
        _ => Body::GenericNack,
    };
    Pdu {
        seq: e.seq,
        status: e.status,
        body,
    }
}
