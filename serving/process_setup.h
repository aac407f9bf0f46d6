// Start-up steps shared by moe_server and moe_expert_worker.
#ifndef MOE_SERVING_PROCESS_SETUP_H_
#define MOE_SERVING_PROCESS_SETUP_H_

#include <csignal>
#include <string>

namespace moe {

// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread
// started after it) and returns the set, for sigwait() in main().
sigset_t BlockShutdownSignals();

// The spin count serving processes give libgomp (GOMP_SPINCOUNT, in
// spin-loop iterations, about 30 µs here): long enough to bridge the serial
// steps between the parallel regions of one layer call, short enough that
// an idle worker soon gives its core back to gRPC. How it was chosen:
// bench/README.md, "One OpenMP team".
inline constexpr const char* kOpenMpSpinCount = "1000";

// libgomp reads GOMP_SPINCOUNT once, when it is loaded, before main(). If
// neither GOMP_SPINCOUNT nor OMP_WAIT_POLICY is set, re-executes the
// program (same pid, same argv) with GOMP_SPINCOUNT=kOpenMpSpinCount;
// otherwise, or if the exec fails, returns and libgomp keeps what it read.
// Not when started through a loader or another wrapper (ld.so, valgrind
// without --trace-children): set GOMP_SPINCOUNT yourself there. Call first
// in main(), before any thread starts.
void UseServingOpenMpSpinCount(char** argv);

// "OpenMP idle wait: GOMP_SPINCOUNT=1000" (or OMP_WAIT_POLICY=..., or
// libgomp's default), for the start-up log.
std::string OpenMpWaitDescription();

// The first steps of a serving binary's main(), in order: the OpenMP spin
// count (may re-execute), the usage text and the flags, the CPU tier cap
// (--max_isa; exits on a bad value), SIGTERM/SIGINT blocked before any
// thread starts (returned, for sigwait()), freed memory kept in the
// process, abseil's mutex deadlock check off.
sigset_t StartServingProcess(int argc, char** argv, const char* usage);

}  // namespace moe

#endif  // MOE_SERVING_PROCESS_SETUP_H_
