//! `tcpb log`: the broker's log, its last lines or followed as it grows.
//! The broker writes it to `broker.log` in the state directory (set aside
//! as `broker.log.old` past 4 MiB); `TCPB_LOG=debug` raises the level.

use crate::paths::Paths;
use anyhow::{Context, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

/// Where the last `lines` lines of `text` start.
fn tail_start(text: &[u8], lines: usize) -> usize {
    if lines == 0 {
        return text.len();
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    body.iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1)
}

/// Prints the last `lines` lines; with `follow`, then what is appended,
/// until interrupted (a log set aside and started anew is followed too).
pub(crate) fn log(paths: &Paths, lines: usize, follow: bool) -> Result<()> {
    let file = paths.log_file();
    let mut out = std::io::stdout().lock();
    let mut offset = match std::fs::read(&file) {
        Ok(text) => {
            out.write_all(&text[tail_start(&text, lines)..])?;
            text.len() as u64
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "tcpb: no broker log yet at {} (the broker starts with the first compile)",
                file.display()
            );
            if !follow {
                return Ok(());
            }
            0
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    out.flush()?;
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(mut f) = std::fs::File::open(&file) else {
            continue;
        };
        let len = f.metadata().map_or(0, |m| m.len());
        if len < offset {
            offset = 0; // set aside and started anew
        }
        f.seek(SeekFrom::Start(offset))?;
        let mut new = Vec::new();
        f.read_to_end(&mut new)?;
        offset += new.len() as u64;
        out.write_all(&new)?;
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail() {
        let t = b"a\nb\nc\n";
        assert_eq!(&t[tail_start(t, 1)..], b"c\n");
        assert_eq!(&t[tail_start(t, 2)..], b"b\nc\n");
        assert_eq!(&t[tail_start(t, 9)..], t);
        assert_eq!(tail_start(b"x", 1), 0);
        let u = b"a\nb";
        assert_eq!(&u[tail_start(u, 1)..], b"b");
        assert_eq!(tail_start(b"", 3), 0);
        assert_eq!(tail_start(t, 0), t.len());
    }
}
