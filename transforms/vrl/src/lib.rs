//! filter and remap transforms (VRL)
