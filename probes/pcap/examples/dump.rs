//! Print the socket-data events of a capture, one line each: `cargo run -p perisco-pcap --example dump -- FILE`.
use perisco_engine::event::Event;

fn main() {
    let path = std::env::args().nth(1).expect("usage: dump FILE");
    let (events, stats) = match perisco_pcap::read_file(path.as_ref(), perisco_pcap::Limits::default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    for e in &events {
        if let Event::Socket(s) = e {
            let preview: String = s
                .data
                .iter()
                .take(40)
                .map(|b| {
                    if b.is_ascii_graphic() || *b == b' ' {
                        *b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            println!(
                "{:>4} {:<6?} {:<8?} {:<8?} {} <- {} len={:<6} {}",
                s.conn_id, s.kind, s.role, s.direction, s.local, s.peer, s.len, preview
            );
        }
    }
    eprintln!("{stats:?}");
}
