//! mnemo's compute kernels: `#![no_std]`, zero dependencies, wasm32 + SIMD128.
//!
//! Every export is a plain C-ABI function over byte offsets into this module's own linear memory. The
//! TypeScript loader (`packages/kernels/src`) validates every argument before calling in, so the kernels do not
//! check bounds.
//!
//! Batch invariance is the rule everywhere: the floating-point operations that produce an output element, and
//! their order, depend only on that element's own inputs (its input row, its weight row, its absolute position)
//! and on the shape arguments that define the math (`in`, group size, head dim, ...) — never on `rows`, on how
//! rows are blocked together, or on cache rows outside the causal window. Register blocking over rows/outputs
//! only ever interleaves independent accumulation chains; each chain is the same sequence as in the 1-row path.
#![no_std]

mod attention;
mod dense;
mod ggml;
mod ggml_q8a;
mod ops;
mod q8a;
mod quant;
mod simd;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
