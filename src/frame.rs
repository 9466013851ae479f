//! Framing of control messages: a 4-byte big-endian length, then that many
//! bytes of JSON. Decoding never panics: oversize, truncated and malformed
//! frames are errors.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Read, Write};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload accepted: a status or a lease request of a farm of
/// `limits::MAX_HOSTS` hosts (about 3.5 MB and 0.7 MB) with room to spare.
/// Only this user can reach the control socket.
pub(crate) const MAX_FRAME: usize = 16 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The length prefix is over `MAX_FRAME`.
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The connection closed inside a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The payload is not a valid message.
    #[error("malformed message: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// Encodes `msg` as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![0; 4];
    // Serialising these plain data types into a Vec cannot fail.
    serde_json::to_writer(&mut out, msg).expect("message serialises");
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Decodes a payload (without its length prefix).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(payload)?)
}

fn check_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

fn eof_is_truncated(e: io::Error) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

/// Splits one whole frame off the front of `buf`: `Ok(None)` when `buf`
/// holds less than a frame, otherwise the payload and the bytes used.
pub fn parse(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let len = check_len(header.try_into().expect("4 bytes"))?;
    Ok(buf.get(4..4 + len).map(|p| (p, 4 + len)))
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame.
pub fn read_sync(r: &mut impl Read) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut payload = vec![0; check_len(header)?];
    r.read_exact(&mut payload).map_err(eof_is_truncated)?;
    Ok(Some(payload))
}

/// Writes one message as a frame.
pub fn write_sync<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    w.write_all(&encode(msg))
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut header[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => got += n,
        }
    }
    let mut payload = vec![0; check_len(header)?];
    r.read_exact(&mut payload).await.map_err(eof_is_truncated)?;
    Ok(Some(payload))
}

/// Writes one message as a frame.
pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    w.write_all(&encode(msg)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientMsg, PROTOCOL_VERSION, Request};
    use proptest::prelude::*;
    use std::io::Cursor;

    #[test]
    fn roundtrip_sync() {
        let msg = ClientMsg {
            v: PROTOCOL_VERSION,
            req: Request::Status,
        };
        let bytes = encode(&msg);
        let mut cur = Cursor::new(bytes.clone());
        let payload = read_sync(&mut cur).unwrap().unwrap();
        assert_eq!(decode::<ClientMsg>(&payload).unwrap(), msg);
        assert!(
            read_sync(&mut cur).unwrap().is_none(),
            "clean EOF after the frame"
        );
        assert_eq!(parse(&bytes).unwrap().unwrap().1, bytes.len());
        assert!(parse(&bytes[..bytes.len() - 1]).unwrap().is_none());
    }

    #[test]
    fn errors() {
        let mut big = Cursor::new(((MAX_FRAME + 1) as u32).to_be_bytes().to_vec());
        assert!(matches!(read_sync(&mut big), Err(FrameError::TooLarge(_))));
        let mut short = Cursor::new(vec![0, 0, 0, 9, b'{']);
        assert!(matches!(read_sync(&mut short), Err(FrameError::Truncated)));
        let mut half_header = Cursor::new(vec![0, 0]);
        assert!(matches!(
            read_sync(&mut half_header),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            decode::<ClientMsg>(b"{\"v\":1}"),
            Err(FrameError::Invalid(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut cur = Cursor::new(bytes.clone());
            while let Ok(Some(p)) = read_sync(&mut cur) {
                let _ = decode::<ClientMsg>(&p);
            }
            let _ = parse(&bytes);
        }

        #[test]
        fn truncation_is_detected(cut in 0usize..40) {
            let bytes = encode(&ClientMsg { v: PROTOCOL_VERSION, req: Request::Stop });
            let cut = cut.min(bytes.len() - 1);
            let mut cur = Cursor::new(bytes[..cut].to_vec());
            match read_sync(&mut cur) {
                Ok(None) => prop_assert_eq!(cut, 0),
                Err(FrameError::Truncated) => prop_assert!(cut > 0),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
