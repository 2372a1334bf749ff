// PLACEHOLDER (not committed): replaced by branch media-sdp.
pub struct RtcpError(pub &'static str);
pub struct Scrubbed {
    pub removed: u32,
}
pub fn scrub(packet: &[u8], _cname: &[u8], out: &mut Vec<u8>) -> Result<Scrubbed, RtcpError> {
    out.extend_from_slice(packet);
    Ok(Scrubbed { removed: 0 })
}
pub fn is_rtcp(d: &[u8]) -> bool {
    d.len() >= 2 && (192..=223).contains(&d[1])
}
