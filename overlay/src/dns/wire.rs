//! Just enough of DNS's wire format (RFC 1035) for a resolver that answers A queries from a
//! table and relays the rest: a query's header and single question parsed with every
//! bound checked, and answers built. Nothing here panics on any input.

use std::net::Ipv4Addr;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;

const HEADER: usize = 12;
const MAX_NAME: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message shorter than a DNS header")]
    Short,
    #[error("not a standard query")]
    NotAQuery,
    #[error("a query must hold exactly one question")]
    Questions,
    #[error("malformed question name")]
    Name,
}

/// A parsed query: what the answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// Recursion desired, echoed.
    pub rd: bool,
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question ends in the message (the answer copies the question as sent).
    question_end: usize,
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// Parse a query with one question (names uncompressed, as queries send them).
pub fn parse_query(msg: &[u8]) -> Result<Query, WireError> {
    if msg.len() < HEADER {
        return Err(WireError::Short);
    }
    let id = u16_at(msg, 0).ok_or(WireError::Short)?;
    let flags = u16_at(msg, 2).ok_or(WireError::Short)?;
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if qr || opcode != 0 {
        return Err(WireError::NotAQuery);
    }
    if u16_at(msg, 4) != Some(1) {
        return Err(WireError::Questions);
    }
    let mut at = HEADER;
    let mut labels: Vec<String> = Vec::new();
    let mut length = 0usize;
    loop {
        let len = *msg.get(at).ok_or(WireError::Name)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers (and the reserved label types) have no place in a query.
        if len & 0xc0 != 0 {
            return Err(WireError::Name);
        }
        let label = msg.get(at..at + len).ok_or(WireError::Name)?;
        length += len + 1;
        if length > MAX_NAME {
            return Err(WireError::Name);
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16_at(msg, at).ok_or(WireError::Name)?;
    let qclass = u16_at(msg, at + 2).ok_or(WireError::Name)?;
    Ok(Query {
        id,
        rd: flags & 0x0100 != 0,
        name: labels.join("."),
        qtype,
        qclass,
        question_end: at + 4,
    })
}

/// The answer to `query` (as received in `msg`) with `rcode` and an A record per address,
/// each with time to live `ttl` seconds.
pub fn answer(msg: &[u8], query: &Query, rcode: u8, addrs: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let question = msg.get(HEADER..query.question_end).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER + question.len() + addrs.len() * 16);
    out.extend_from_slice(&query.id.to_be_bytes());
    // QR, opcode 0, AA, RD as asked, RA, rcode.
    let mut flags: u16 = 0x8000 | 0x0400 | 0x0080 | u16::from(rcode & 0xf);
    if query.rd {
        flags |= 0x0100;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(question);
    for addr in addrs {
        // The name: a pointer to the question's, at offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&addr.octets());
    }
    out
}

/// An error answer for a message that could not be parsed as a query, when it has at
/// least an id to answer to.
pub fn format_error(msg: &[u8]) -> Option<Vec<u8>> {
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 != 0 {
        return None; // a response: never answer one
    }
    let mut out = Vec::with_capacity(HEADER);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(0x8000u16 | u16::from(RCODE_FORMERR)).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

/// A query for `name` (tests and tools).
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// The rcode and A addresses of an answer (tests and tools).
pub fn read_answer(msg: &[u8]) -> Option<(u8, Vec<Ipv4Addr>)> {
    let rcode = (u16_at(msg, 2)? & 0xf) as u8;
    let answers = u16_at(msg, 6)? as usize;
    let query = parse_question_end(msg)?;
    let mut at = query;
    let mut addrs = Vec::new();
    for _ in 0..answers {
        // name (pointer or labels), type, class, ttl, rdlength, rdata
        at = skip_name(msg, at)?;
        let rtype = u16_at(msg, at)?;
        let rdlen = u16_at(msg, at + 8)? as usize;
        let data = msg.get(at + 10..at + 10 + rdlen)?;
        if rtype == TYPE_A && rdlen == 4 {
            addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + rdlen;
    }
    Some((rcode, addrs))
}

fn parse_question_end(msg: &[u8]) -> Option<usize> {
    let at = skip_name(msg, HEADER)?;
    Some(at + 4)
}

fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)? as usize;
        if len & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        at += 1;
        if len == 0 {
            return Some(at);
        }
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_round_trips_into_an_answer() {
        let q = query(0x1234, "Web.Front", TYPE_A);
        let parsed = parse_query(&q).expect("parsed");
        assert_eq!(parsed.name, "web.front");
        assert_eq!((parsed.id, parsed.qtype, parsed.rd), (0x1234, TYPE_A, true));
        let addrs = [Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 1, 3)];
        let a = answer(&q, &parsed, RCODE_NOERROR, &addrs, 0);
        assert_eq!(read_answer(&a), Some((RCODE_NOERROR, addrs.to_vec())));
        let nx = answer(&q, &parsed, RCODE_NXDOMAIN, &[], 0);
        assert_eq!(read_answer(&nx), Some((RCODE_NXDOMAIN, vec![])));
    }

    #[test]
    fn garbage_is_refused_never_a_panic() {
        assert_eq!(parse_query(&[]), Err(WireError::Short));
        assert_eq!(parse_query(&[0; 11]), Err(WireError::Short));
        let mut q = query(1, "a.b", TYPE_A);
        q.truncate(q.len() - 3);
        assert_eq!(parse_query(&q), Err(WireError::Name));
        let mut pointer = query(1, "a", TYPE_A);
        pointer[12] = 0xc0;
        assert_eq!(parse_query(&pointer), Err(WireError::Name));
        let mut response = query(1, "a", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), Err(WireError::NotAQuery));
        assert_eq!(format_error(&response), None);
        // Every prefix and a sweep of byte flips of a valid query: errors or answers only.
        let q = query(7, "tasks.web.example", TYPE_A);
        for end in 0..q.len() {
            let _ = parse_query(&q[..end]);
        }
        for i in 0..q.len() {
            for v in [0u8, 1, 63, 64, 192, 255] {
                let mut m = q.clone();
                m[i] = v;
                if let Ok(p) = parse_query(&m) {
                    let _ = answer(&m, &p, RCODE_NOERROR, &[Ipv4Addr::LOCALHOST], 0);
                }
            }
        }
    }
}
