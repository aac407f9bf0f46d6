// TLS and mutual TLS on the gRPC and REST ports, with certificates made by
// the openssl command at test time.
#include <httplib.h>

#include <cstdlib>

#include "gtest/gtest.h"
#include "tests/server_test_util.h"
#include "tests/test_files.h"

namespace moe {
namespace {

using ::moe::testing::ReadFile;
using ::moe::testing::SetDeadline;
using ::moe::testing::TempDir;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string d = dir_.path();
    const std::string script =
        "set -e; cd '" + d +
        "'; "
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 "
        "-subj /CN=moe-test-ca 2>/dev/null; "
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 "
        "-subj /CN=other-ca 2>/dev/null; "
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
        "-subj /CN=localhost 2>/dev/null; "
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext; "
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
        "-out server.crt -days 2 -extfile server.ext 2>/dev/null; "
        "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
        "-subj /CN=moe-client 2>/dev/null; "
        "printf 'extendedKeyUsage=clientAuth\\n' > client.ext; "
        "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
        "-out client.crt -days 2 -extfile client.ext 2>/dev/null";
    ASSERT_EQ(std::system(script.c_str()), 0) << "openssl failed (is it installed?)";
  }

  std::unique_ptr<MoeServer> Start(bool require_client_cert) {
    ServerOptions o = ::moe::testing::LocalOptions();
    o.metrics_port = -1;
    o.http_port = 0;
    o.tls.cert_file = dir_.File("server.crt");
    o.tls.key_file = dir_.File("server.key");
    if (require_client_cert) o.tls.client_ca_file = dir_.File("ca.crt");
    auto s = MoeServer::Start(::moe::testing::MakeLayer(::moe::testing::SmallDemoWeights()), o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  grpc::Status Live(const std::string& address, std::shared_ptr<grpc::ChannelCredentials> creds) {
    auto stub = inference::GRPCInferenceService::NewStub(grpc::CreateChannel(address, creds));
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(5));
    inference::ServerLiveResponse resp;
    return stub->ServerLive(&ctx, inference::ServerLiveRequest(), &resp);
  }

  std::shared_ptr<grpc::ChannelCredentials> Ssl(const std::string& ca, bool with_cert) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadFile(dir_.File(ca));
    if (with_cert) {
      o.pem_private_key = ReadFile(dir_.File("client.key"));
      o.pem_cert_chain = ReadFile(dir_.File("client.crt"));
    }
    return grpc::SslCredentials(o);
  }

  TempDir dir_;
};

TEST_F(TlsTest, ServerTlsAcceptsTrustingClientsOnly) {
  auto server = Start(false);
  ASSERT_NE(server, nullptr);
  const std::string addr = server->local_grpc_address();
  EXPECT_TRUE(Live(addr, Ssl("ca.crt", false)).ok());
  EXPECT_FALSE(Live(addr, grpc::InsecureChannelCredentials()).ok());  // plaintext
  EXPECT_FALSE(Live(addr, Ssl("other.crt", false)).ok());             // untrusted server cert
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificate) {
  auto server = Start(true);
  ASSERT_NE(server, nullptr);
  const std::string addr = server->local_grpc_address();
  EXPECT_FALSE(Live(addr, Ssl("ca.crt", false)).ok());  // no client certificate
  EXPECT_TRUE(Live(addr, Ssl("ca.crt", true)).ok());
  EXPECT_FALSE(Live(addr, grpc::InsecureChannelCredentials()).ok());
}

TEST_F(TlsTest, MissingCertificateFileFailsStartWithItsName) {
  ServerOptions o = ::moe::testing::LocalOptions();
  o.tls.cert_file = dir_.File("nope.crt");
  o.tls.key_file = dir_.File("server.key");
  auto s = MoeServer::Start(::moe::testing::MakeLayer(::moe::testing::SmallDemoWeights()), o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("nope.crt"), std::string::npos) << s.status();
}

// REST over HTTPS with the same certificate: trusting clients get in,
// plaintext and untrusting ones do not; with a client CA, only clients
// with a certificate it signed.
TEST_F(TlsTest, RestIsServedOverHttpsWithTheSameCertificates) {
  for (bool mutual : {false, true}) {
    SCOPED_TRACE(mutual ? "mutual TLS" : "server TLS");
    auto server = Start(mutual);
    ASSERT_NE(server, nullptr);
    ASSERT_GT(server->http_port(), 0);
    auto get = [&](const std::string& ca, bool with_cert) {
      std::unique_ptr<httplib::SSLClient> c =
          with_cert ? std::make_unique<httplib::SSLClient>("127.0.0.1", server->http_port(),
                                                           dir_.File("client.crt"),
                                                           dir_.File("client.key"))
                    : std::make_unique<httplib::SSLClient>("127.0.0.1", server->http_port());
      c->set_ca_cert_path(dir_.File(ca).c_str());
      c->enable_server_certificate_verification(true);
      c->set_connection_timeout(5, 0);
      auto res = c->Get("/v2/health/live");
      return res ? res->status : -1;
    };
    EXPECT_EQ(get("ca.crt", true), 200);
    EXPECT_EQ(get("ca.crt", false), mutual ? -1 : 200);
    EXPECT_EQ(get("other.crt", false), -1);
    httplib::Client plain("127.0.0.1", server->http_port());
    plain.set_connection_timeout(5, 0);
    plain.set_read_timeout(5, 0);
    auto res = plain.Get("/v2/health/live");
    EXPECT_TRUE(!res || res->status != 200);
  }
}

}  // namespace
}  // namespace moe
