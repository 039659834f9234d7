//! pcap source: pcap/pcapng files, TCP reassembled into socket-data events
