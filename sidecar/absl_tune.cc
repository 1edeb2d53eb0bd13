// absl_tune.cc: keyholdd's one absl setting (C++: absl has no C API).
//
// Debian builds absl without NDEBUG, so every absl::Mutex::Lock() -- gRPC
// takes several per call -- runs absl's debug deadlock detector: a global
// lock, and a graph node per mutex ever held at once whose memory absl
// never returns (576 KiB of keyholdd's RSS stayed behind after 10,000
// concurrent handshakes; docs/PERFORMANCE.md). Release builds of absl run
// without it; so does keyholdd.
#include "absl_tune.h"

#include <absl/synchronization/mutex.h>

extern "C" void kh_absl_tune(void) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}
