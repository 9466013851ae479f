//! Control frames as the broker reads them: any bytes must decode to a
//! message or an error, never a panic, and a message that decodes must
//! survive being encoded and decoded again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpb::frame;
use tcpb::protocol::{ClientMsg, VersionProbe};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((payload, used))) = frame::parse(rest) {
        if let Ok(msg) = frame::decode::<ClientMsg>(payload) {
            let again = frame::encode(&msg);
            let (p, _) = frame::parse(&again).unwrap().unwrap();
            assert_eq!(frame::decode::<ClientMsg>(p).unwrap(), msg);
        }
        let _ = frame::decode::<VersionProbe>(payload);
        rest = &rest[used..];
    }
    let mut cursor = std::io::Cursor::new(data);
    while let Ok(Some(p)) = frame::read_sync(&mut cursor) {
        let _ = frame::decode::<ClientMsg>(&p);
    }
});
