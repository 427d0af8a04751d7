// Test-only: a small WebAssembly binary reader that decodes function bodies instruction by instruction (so immediates
// are never mistaken for opcodes) and reports, per function, its SIMD (0xFD-prefixed) instructions, the SIMD
// instructions inside loops, and its direct callees.

export interface FunctionStats {
  /** 0xFD-prefixed instructions in the body. */
  simd: number;
  /** 0xFD-prefixed instructions that sit inside at least one `loop`. */
  simdInLoops: number;
  /** Number of `loop` instructions. */
  loops: number;
  /** Function indices called directly. */
  calls: Set<number>;
  /** SIMD sub-opcode (after the 0xFD prefix) → how many times it sits inside a loop. */
  opsInLoops: Map<number, number>;
}

export interface ModuleStats {
  /** Export name → function index. */
  exports: Map<string, number>;
  /** Function index → stats (imported functions are absent). */
  functions: Map<number, FunctionStats>;
}

class Reader {
  pos: number;
  constructor(
    private readonly b: Uint8Array,
    pos = 0,
    readonly end = b.length,
  ) {
    this.pos = pos;
  }
  byte(): number {
    if (this.pos >= this.end) throw new Error('wasm-inspect: unexpected end of data');
    return this.b[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
    }
  }
  /** Skips a signed LEB128 of any width. */
  sleb(): void {
    while (this.byte() & 0x80) {
      /* skip */
    }
  }
  skip(n: number): void {
    this.pos += n;
  }
  name(): string {
    const n = this.u32();
    const s = new TextDecoder().decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
}

export function inspectWasm(bytes: Uint8Array): ModuleStats {
  const r = new Reader(bytes, 8);
  let importedFuncs = 0;
  const exports = new Map<string, number>();
  const functions = new Map<number, FunctionStats>();
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    if (id === 2) {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        r.name();
        r.name();
        const kind = r.byte();
        if (kind === 0) {
          r.u32();
          importedFuncs++;
        } else if (kind === 1) {
          r.byte();
          limits(r);
        } else if (kind === 2) {
          limits(r);
        } else {
          r.byte();
          r.byte();
        }
      }
    } else if (id === 7) {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const name = r.name();
        const kind = r.byte();
        const index = r.u32();
        if (kind === 0) exports.set(name, index);
      }
    } else if (id === 10) {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const bodySize = r.u32();
        const bodyEnd = r.pos + bodySize;
        functions.set(importedFuncs + i, scanBody(new Reader(bytes, r.pos, bodyEnd)));
        r.pos = bodyEnd;
      }
    }
    r.pos = end;
  }
  return { exports, functions };
}

function limits(r: Reader): void {
  const flags = r.byte();
  r.u32();
  if (flags & 1) r.u32();
}

function blockType(r: Reader): void {
  const b = r.byte();
  if (
    b === 0x40 ||
    b === 0x7f ||
    b === 0x7e ||
    b === 0x7d ||
    b === 0x7c ||
    b === 0x7b ||
    b === 0x70 ||
    b === 0x6f
  ) {
    return;
  }
  // a type index as s33: we consumed its first byte
  r.pos--;
  r.sleb();
}

function memarg(r: Reader): void {
  r.u32();
  r.u32();
}

function scanBody(r: Reader): FunctionStats {
  const stats: FunctionStats = {
    simd: 0,
    simdInLoops: 0,
    loops: 0,
    calls: new Set(),
    opsInLoops: new Map(),
  };
  const nLocals = r.u32();
  for (let i = 0; i < nLocals; i++) {
    r.u32();
    r.byte();
  }
  // stack of open blocks: true = loop
  const blocks: boolean[] = [];
  let loopDepth = 0;
  while (r.pos < r.end) {
    const op = r.byte();
    switch (op) {
      case 0x02: // block
      case 0x04: // if
        blockType(r);
        blocks.push(false);
        break;
      case 0x03: // loop
        blockType(r);
        blocks.push(true);
        loopDepth++;
        stats.loops++;
        break;
      case 0x0b: // end
        if (blocks.length > 0 && blocks.pop()) loopDepth--;
        break;
      case 0x0c: // br
      case 0x0d: // br_if
        r.u32();
        break;
      case 0x0e: {
        // br_table
        const n = r.u32();
        for (let i = 0; i <= n; i++) r.u32();
        break;
      }
      case 0x10: // call
        stats.calls.add(r.u32());
        break;
      case 0x11: // call_indirect
        r.u32();
        r.u32();
        break;
      case 0x1c: {
        // select t*
        const n = r.u32();
        r.skip(n);
        break;
      }
      case 0x20:
      case 0x21:
      case 0x22:
      case 0x23:
      case 0x24:
      case 0x25:
      case 0x26:
        r.u32();
        break;
      case 0x3f: // memory.size
      case 0x40: // memory.grow
        r.byte();
        break;
      case 0x41: // i32.const
      case 0x42: // i64.const
        r.sleb();
        break;
      case 0x43: // f32.const
        r.skip(4);
        break;
      case 0x44: // f64.const
        r.skip(8);
        break;
      case 0xd0: // ref.null
        r.byte();
        break;
      case 0xd2: // ref.func
        r.u32();
        break;
      case 0xfc:
        fcOp(r);
        break;
      case 0xfe: // threads: atomic.fence has one zero byte, every other atomic op a memarg
        if (r.u32() === 0x03) r.byte();
        else memarg(r);
        break;
      case 0xfd: {
        const sub = fdOp(r);
        stats.simd++;
        if (loopDepth > 0) {
          stats.simdInLoops++;
          stats.opsInLoops.set(sub, (stats.opsInLoops.get(sub) ?? 0) + 1);
        }
        break;
      }
      default:
        if (op >= 0x28 && op <= 0x3e) memarg(r); // loads/stores
        // everything else in the MVP numeric range has no immediates
        break;
    }
  }
  return stats;
}

function fcOp(r: Reader): void {
  const sub = r.u32();
  if (sub <= 7) return; // saturating truncations
  switch (sub) {
    case 8: // memory.init
      r.u32();
      r.byte();
      return;
    case 9: // data.drop
      r.u32();
      return;
    case 10: // memory.copy
      r.byte();
      r.byte();
      return;
    case 11: // memory.fill
      r.byte();
      return;
    default:
      // table ops: two indices at most
      r.u32();
      if (sub === 12 || sub === 14) r.u32();
  }
}

/** Skips one 0xFD-prefixed instruction's immediates; returns its sub-opcode. */
function fdOp(r: Reader): number {
  const sub = r.u32();
  if (sub <= 0x0b || sub === 0x5c || sub === 0x5d) {
    memarg(r); // v128 loads / stores / load*_zero
  } else if (sub === 0x0c || sub === 0x0d) {
    r.skip(16); // v128.const, i8x16.shuffle
  } else if (sub >= 0x15 && sub <= 0x22) {
    r.byte(); // extract / replace lane
  } else if (sub >= 0x54 && sub <= 0x5b) {
    memarg(r); // load/store lane
    r.byte();
  }
  return sub;
}

/**
 * SIMD instruction counts over a function and everything it calls (transitively); `opsInLoops` maps a SIMD
 * sub-opcode to its count inside loops.
 */
export function reachable(
  stats: ModuleStats,
  fn: number,
): { simd: number; simdInLoops: number; functions: number; opsInLoops: Map<number, number> } {
  const seen = new Set<number>();
  const todo = [fn];
  let simd = 0;
  let simdInLoops = 0;
  const opsInLoops = new Map<number, number>();
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const s = stats.functions.get(f);
    if (!s) continue;
    simd += s.simd;
    simdInLoops += s.simdInLoops;
    for (const [op, c] of s.opsInLoops) opsInLoops.set(op, (opsInLoops.get(op) ?? 0) + c);
    for (const c of s.calls) todo.push(c);
  }
  return { simd, simdInLoops, functions: seen.size, opsInLoops };
}
