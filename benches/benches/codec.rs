//! Codec micro-benchmarks: encode and decode of the two hottest packets,
//! SUBMIT_JOB_BG (client → server) and JOB_ASSIGN_UNIQ (server → worker),
//! with a 100-byte payload and a 36-byte unique.
//!
//! `cargo bench -p gearbox-benches --bench codec`

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gearbox_proto::packet::{encode_req, encode_res};
use gearbox_proto::{Codec, Frame, PacketType};
use tokio_util::codec::Decoder;

const FUNCTION: &[u8] = b"resize-image";
const UNIQUE: &[u8] = b"6f1c2a8e-3b7d-11ef-9a4c-0242ac120002";
const HANDLE: &[u8] = b"H:bench-host:1234567";
/// Packets per iteration: a batch, as a server reads them from one socket read.
const BATCH: usize = 64;

fn payload() -> Vec<u8> {
    vec![b'x'; 100]
}

fn submit_fields(payload: &[u8]) -> [&[u8]; 3] {
    [FUNCTION, UNIQUE, payload]
}

fn assign_fields(payload: &[u8]) -> [&[u8]; 4] {
    [HANDLE, FUNCTION, UNIQUE, payload]
}

fn wire(batch: usize, encode: impl Fn(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::new();
    for _ in 0..batch {
        encode(&mut buf);
    }
    buf.freeze()
}

fn bench_packet(c: &mut Criterion, name: &str, encode: impl Fn(&mut BytesMut) + Copy) {
    let one = wire(1, encode);
    let many = wire(BATCH, encode);
    let mut group = c.benchmark_group(name);

    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("encode/packets", |b| {
        let mut buf = BytesMut::with_capacity(many.len());
        b.iter(|| {
            buf.clear();
            for _ in 0..BATCH {
                encode(&mut buf);
            }
            black_box(buf.len())
        })
    });
    group.throughput(Throughput::Bytes(many.len() as u64));
    group.bench_function("encode/bytes", |b| {
        let mut buf = BytesMut::with_capacity(many.len());
        b.iter(|| {
            buf.clear();
            for _ in 0..BATCH {
                encode(&mut buf);
            }
            black_box(buf.len())
        })
    });

    let decode_batch = |b: &mut criterion::Bencher| {
        let mut codec = Codec::default();
        b.iter(|| {
            let mut src = BytesMut::from(&many[..]);
            let mut n = 0;
            while let Some(frame) = codec.decode(&mut src).expect("valid packets") {
                if let Frame::Packet(p) = frame {
                    n += p.arg(p.args().len() - 1).len();
                }
            }
            black_box(n)
        })
    };
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("decode/packets", decode_batch);
    group.throughput(Throughput::Bytes(many.len() as u64));
    group.bench_function("decode/bytes", decode_batch);
    group.finish();
    // Sanity: one packet decodes to the fields it was built from.
    let mut src = BytesMut::from(&one[..]);
    match Codec::default().decode(&mut src).expect("valid") {
        Some(Frame::Packet(p)) => assert_eq!(
            p.arg(1).as_ref(),
            match p.kind {
                PacketType::SUBMIT_JOB_BG => UNIQUE,
                _ => FUNCTION,
            }
        ),
        other => panic!("expected a packet, got {other:?}"),
    }
}

fn codec(c: &mut Criterion) {
    let data = payload();
    let d = data.as_slice();
    bench_packet(c, "SUBMIT_JOB_BG_100B", |buf| {
        encode_req(buf, PacketType::SUBMIT_JOB_BG, &submit_fields(d))
    });
    bench_packet(c, "JOB_ASSIGN_UNIQ_100B", |buf| {
        encode_res(buf, PacketType::JOB_ASSIGN_UNIQ, &assign_fields(d))
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
