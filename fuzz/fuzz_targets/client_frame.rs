//! Client frame decoding (`protocol::client::decode`) on arbitrary text: it must return a frame or
//! an error with a wire code, never panic, whatever the nesting, numbers or sizes; and whatever
//! it accepts for the store (a body, a client_msg_id) is something the store can take. And the
//! WebSocket frame reassembly on arbitrary bytes: never panic, never a message over the cap.
#![no_main]

use chorus::ids::storable;
use chorus::protocol::ClientFrame;
use chorus::protocol::client::decode;
use chorus::session::frames::{Assembler, FrameStream, Inbound};
use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(request) = decode(text, 4096)
        && let ClientFrame::Send {
            body,
            client_msg_id,
            ..
        } = request.frame
    {
        assert!(storable(&body), "a body the store refuses got through");
        assert!(
            client_msg_id.as_deref().is_none_or(storable),
            "a client_msg_id the store refuses got through"
        );
    }
    // The same bytes as a client's raw frame stream, through the codec and the assembler.
    let payload = futures_util::stream::iter([Ok::<_, actix_web::error::PayloadError>(
        bytes::Bytes::copy_from_slice(data),
    )]);
    let mut frames = FrameStream::new(payload, 1024);
    let mut assembler = Assembler::new(1024);
    futures_executor::block_on(async {
        while let Some(Ok(frame)) = frames.next().await {
            if let Inbound::Text(t) = assembler.accept(frame) {
                assert!(t.len() <= 1024, "a message over the cap got through");
            }
        }
    });
});
