// Starting a cpp-httplib server in the background, shared by the REST
// service and the /metrics endpoint.
#ifndef MOE_SERVING_HTTP_LISTENER_H_
#define MOE_SERVING_HTTP_LISTENER_H_

#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace moe {

// Binds `server` to host:port (0 picks a free port) and runs its accept
// loop on *thread, returning once the loop runs (before that, stop() would
// be a no-op and could leave the thread blocked in accept). Returns the
// bound port; UNAVAILABLE naming `what` and the address when it cannot bind.
absl::StatusOr<int> ListenInBackground(httplib::Server* server, const std::string& host, int port,
                                       const std::string& what, std::thread* thread);

}  // namespace moe

#endif  // MOE_SERVING_HTTP_LISTENER_H_
