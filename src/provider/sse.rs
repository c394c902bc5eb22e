//! Incremental Server-Sent Events parser: feed byte chunks as they arrive (events and even
//! UTF-8 characters may be split across chunks), get complete events out.

/// One complete SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field (empty when absent).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Buffers bytes and yields complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned without finding an event end.
    scanned: usize,
}

impl SseParser {
    /// A parser with an empty buffer.
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Adds a chunk and appends every event it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        // Resume scanning just before the old end (a terminator may straddle chunks).
        let mut from = self.scanned.saturating_sub(2);
        while let Some((end, next)) = find_event_end(&self.buf[start..], from) {
            from = 0;
            let raw = &self.buf[start..start + end];
            if let Some(ev) = parse_event(raw) {
                out.push(ev);
            }
            start += next;
        }
        if start > 0 {
            self.buf.drain(..start);
        }
        self.scanned = self.buf.len();
    }

    /// Parses whatever is left when the stream ends (a final event without a blank line).
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        let raw = std::mem::take(&mut self.buf);
        self.scanned = 0;
        if let Some(ev) = parse_event(&raw) {
            out.push(ev);
        }
    }
}

/// Finds the blank line ending an event: returns (event length, bytes to skip).
fn find_event_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

fn parse_event(raw: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(raw);
    let mut ev = SseEvent::default();
    let mut has_data = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                if has_data {
                    ev.data.push('\n');
                }
                ev.data.push_str(value);
                has_data = true;
            }
            "event" => ev.event = value.to_string(),
            _ => {}
        }
    }
    has_data.then_some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_chunks(text: &str, size: usize) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(size) {
            p.feed(chunk, &mut out);
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn splits_anywhere_give_same_events() {
        let text = "event: a\ndata: {\"x\":\"héllo\"}\n\n: comment\n\ndata: one\ndata: two\r\n\r\ndata: [DONE]\n\n";
        let whole = parse_in_chunks(text, text.len());
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].event, "a");
        assert_eq!(whole[0].data, "{\"x\":\"héllo\"}");
        assert_eq!(whole[1].data, "one\ntwo");
        assert_eq!(whole[2].data, "[DONE]");
        for size in 1..8 {
            assert_eq!(parse_in_chunks(text, size), whole, "chunk size {size}");
        }
    }

    #[test]
    fn trailing_event_without_blank_line() {
        assert_eq!(parse_in_chunks("data: last", 3)[0].data, "last");
    }
}
