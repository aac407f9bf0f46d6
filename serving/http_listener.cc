#include "serving/http_listener.h"

#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace moe {

absl::StatusOr<int> ListenInBackground(httplib::Server* server, const std::string& host, int port,
                                       const std::string& what, std::thread* thread) {
  int bound = -1;
  if (port == 0) {
    bound = server->bind_to_any_port(host);
  } else if (server->bind_to_port(host, port)) {
    bound = port;
  }
  if (bound <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for ", what, " on ", host, ":", port, " (port in use?)"));
  }
  *thread = std::thread([server] { server->listen_after_bind(); });
  for (int i = 0; i < 5000 && !server->is_running(); ++i) absl::SleepFor(absl::Milliseconds(1));
  return bound;
}

}  // namespace moe
