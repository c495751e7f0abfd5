// The uniform of the float16 conversions: the elements of one view (count); padded to 16 bytes.
struct HalfDims { count: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
