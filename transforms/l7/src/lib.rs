//! parse (HTTP/1.x, HTTP/2, gRPC) and match transforms
