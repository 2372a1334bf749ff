// PLACEHOLDER (not committed): replaced by branch media-sdp.
use std::net::IpAddr;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}
#[derive(Clone, Debug)]
pub struct RtpMap {
    pub pt: u8,
    pub encoding: String,
    pub clock: u32,
    pub channels: Option<u8>,
}
#[derive(Clone, Debug)]
pub struct MediaDesc {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    pub addr: Option<IpAddr>,
    pub hold_addr: bool,
    pub direction: Direction,
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    pub rtcp_mux: bool,
    pub rtpmaps: Vec<RtpMap>,
}
impl MediaDesc {
    pub fn on_hold(&self) -> bool {
        self.hold_addr || matches!(self.direction, Direction::SendOnly | Direction::Inactive)
    }
    pub fn codec(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|r| r.pt == pt)
    }
}
#[derive(Clone, Debug)]
pub struct Parsed {
    pub media: Vec<MediaDesc>,
}
#[derive(Debug)]
pub struct SdpError(pub &'static str);
impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
pub fn parse(_body: &[u8]) -> Result<Parsed, SdpError> {
    Err(SdpError("placeholder"))
}
pub struct Rewrite<'a> {
    pub origin_user: &'a str,
    pub session_id: u64,
    pub version: u64,
    pub ip: IpAddr,
    pub ports: &'a [u16],
}
pub fn rewrite(_body: &[u8], _rw: &Rewrite) -> Result<Vec<u8>, SdpError> {
    Err(SdpError("placeholder"))
}
