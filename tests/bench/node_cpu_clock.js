// Emscripten JS library for the wasm benchmarks under node (tests/bench/run.sh):
// Emscripten 3.1.6 answers clock_gettime(CLOCK_PROCESS_CPUTIME_ID) with EINVAL,
// so bench_geometry's CPU timer would read 0. This override serves the CPU
// clocks from node's process.cpuUsage() (which also counts V8's compiler and
// GC threads) and the others as the stock implementation does.
mergeInto(LibraryManager.library, {
  clock_gettime: function (clk_id, tp) {
    var now;
    if (clk_id === {{{ cDefine('CLOCK_REALTIME') }}}) {
      now = Date.now();
    } else if (clk_id === 2 || clk_id === 3) {  // musl's CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID (not in struct_info)
      var u = process.cpuUsage();
      now = (u.user + u.system) / 1000;
    } else {
      now = performance.now();
    }
    {{{ makeSetValue('tp', C_STRUCTS.timespec.tv_sec, '(now/1000)|0', 'i32') }}};
    {{{ makeSetValue('tp', C_STRUCTS.timespec.tv_nsec, '((now % 1000)*1000*1000)|0', 'i32') }}};
    return 0;
  },
});
