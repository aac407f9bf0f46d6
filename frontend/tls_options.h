// TLS settings shared by the gRPC and REST listeners.
#ifndef MOE_FRONTEND_TLS_OPTIONS_H_
#define MOE_FRONTEND_TLS_OPTIONS_H_

#include <string>

namespace moe {

struct TlsOptions {
  std::string cert_file;       // PEM server certificate chain; empty: plaintext
  std::string key_file;        // PEM private key
  std::string client_ca_file;  // PEM CA; when set, clients must present a cert it signed
};

}  // namespace moe

#endif  // MOE_FRONTEND_TLS_OPTIONS_H_
