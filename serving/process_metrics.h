// The standard Prometheus process collector's series for this process,
// read from /proc at scrape time (Linux):
//   process_cpu_seconds_total       counter, user + system CPU seconds
//   process_resident_memory_bytes   gauge
//   process_virtual_memory_bytes    gauge
//   process_open_fds                gauge, open file descriptors
//   process_max_fds                 gauge, the RLIMIT_NOFILE soft limit
//   process_start_time_seconds      gauge, Unix time the process started
//   process_threads                 gauge
// The names and meanings are those of the official Prometheus clients, so
// dashboards written for any exporter work unchanged.
//
// Thread-safety: may be called from any thread.
#ifndef MOE_SERVING_PROCESS_METRICS_H_
#define MOE_SERVING_PROCESS_METRICS_H_

#include <string>

namespace moe {

// Appends the series above (HELP and TYPE lines included) to `out`. A value
// /proc cannot give is left out rather than reported as zero.
void AppendProcessMetrics(std::string* out);

}  // namespace moe

#endif  // MOE_SERVING_PROCESS_METRICS_H_
