{
  # The kernels are compiled once per ISA level (each a static library with its own -m flags, so no level's code can
  # run on a CPU without it); the addon picks a level at run time from CPUID. Never -march=native.
  "variables": {
    "mn_cflags": ["-std=c11", "-O2", "-ffp-contract=off", "-fno-math-errno", "-fno-strict-aliasing", "-D_GNU_SOURCE", "-Wall", "-Wno-unused-function"],
  },
  "target_defaults": {
    "cflags!": ["-O3"],
    "cflags_c": ["<@(mn_cflags)"],
    "xcode_settings": {"OTHER_CFLAGS": ["<@(mn_cflags)"]},
  },
  "targets": [
    {
      "target_name": "mn_kernels_scalar",
      "type": "static_library",
      "sources": ["native/src/kernels.c"],
    },
    {
      "target_name": "mnemo_native",
      "sources": ["native/src/addon.c", "native/src/common.c", "native/src/ggml.c", "native/src/kv.c", "native/src/pool.c"],
      "dependencies": ["mn_kernels_scalar"],
      "conditions": [
        ["target_arch=='x64'", {
          "dependencies": ["mn_kernels_avx2", "mn_kernels_avx512", "mn_kernels_avx512vnni"],
        }],
        ["target_arch=='arm64'", {
          "dependencies": ["mn_kernels_neon", "mn_kernels_dotprod"],
        }],
        ["OS!='win'", {"libraries": ["-lpthread"]}],
      ],
    },
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "mn_kernels_avx2",
          "type": "static_library",
          "sources": ["native/src/kernels.c"],
          "defines": ["MN_LEVEL_AVX2"],
          "cflags_c": ["-mavx2", "-mfma", "-mf16c"],
          "xcode_settings": {"OTHER_CFLAGS": ["-mavx2", "-mfma", "-mf16c"]},
        },
        {
          "target_name": "mn_kernels_avx512",
          "type": "static_library",
          "sources": ["native/src/kernels.c"],
          "defines": ["MN_LEVEL_AVX512"],
          "cflags_c": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"],
          "xcode_settings": {"OTHER_CFLAGS": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"]},
        },
        {
          "target_name": "mn_kernels_avx512vnni",
          "type": "static_library",
          "sources": ["native/src/kernels.c"],
          "defines": ["MN_LEVEL_AVX512VNNI"],
          "cflags_c": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"],
          "xcode_settings": {"OTHER_CFLAGS": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"]},
        },
      ],
    }],
    ["target_arch=='arm64'", {
      "targets": [
        {
          "target_name": "mn_kernels_neon",
          "type": "static_library",
          "sources": ["native/src/kernels.c"],
          "defines": ["MN_LEVEL_NEON"],
          "cflags_c": ["-march=armv8-a"],
          "xcode_settings": {"OTHER_CFLAGS": ["-march=armv8-a"]},
        },
        {
          "target_name": "mn_kernels_dotprod",
          "type": "static_library",
          "sources": ["native/src/kernels.c"],
          "defines": ["MN_LEVEL_DOTPROD"],
          "cflags_c": ["-march=armv8.2-a+dotprod"],
          "xcode_settings": {"OTHER_CFLAGS": ["-march=armv8.2-a+dotprod"]},
        },
      ],
    }],
  ],
}
