// A minimal, fast KServe v2 server for load-generator tests: it answers
// ModelInfer at once with zeros (d_model 4), or, after a stall is armed,
// holds every call until the stall ends. Counts what it answered.
#ifndef MOE_TESTS_FAKE_KSERVE_SERVER_H_
#define MOE_TESTS_FAKE_KSERVE_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "proto/grpc_service.grpc.pb.h"

namespace moe::testing {

class FakeKserveService final : public inference::GRPCInferenceService::CallbackService {
 public:
  static constexpr int64_t kDModel = 4;

  FakeKserveService() : timer_([this] { TimerLoop(); }) {}
  ~FakeKserveService() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    timer_.join();
  }

  // The first call that arrives at or after `at` starts a stall of
  // `length`: it and every call arriving during the stall are answered when
  // it ends.
  void ArmStall(absl::Time at, absl::Duration length) {
    absl::MutexLock lock(&mu_);
    stall_at_ = at;
    stall_length_ = length;
  }

  int64_t answered() const { return answered_.load(); }

  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* ctx,
                                          const inference::ModelMetadataRequest*,
                                          inference::ModelMetadataResponse* resp) override {
    resp->set_name("moe");
    auto* in = resp->add_inputs();
    in->set_name("input");
    in->set_datatype("FP32");
    in->add_shape(-1);
    in->add_shape(kDModel);
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }

  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                       const inference::ModelInferRequest* req,
                                       inference::ModelInferResponse* resp) override {
    const int64_t t = req->inputs_size() ? req->inputs(0).shape(0) : 1;
    auto* out = resp->add_outputs();
    out->set_name("output");
    out->set_datatype("FP32");
    out->add_shape(t);
    out->add_shape(kDModel);
    resp->add_raw_output_contents(std::string(static_cast<size_t>(t * kDModel * 4), '\0'));
    resp->set_id(req->id());
    auto* reactor = ctx->DefaultReactor();
    const absl::Time now = absl::Now();
    {
      absl::MutexLock lock(&mu_);
      if (stall_end_ == absl::InfinitePast() && now >= stall_at_) stall_end_ = now + stall_length_;
      if (now < stall_end_) {
        held_.push_back(reactor);
        return reactor;
      }
    }
    ++answered_;
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  void TimerLoop() {
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      if (!held_.empty() && absl::Now() >= stall_end_) {
        for (auto* r : held_) {
          ++answered_;
          r->Finish(grpc::Status::OK);
        }
        held_.clear();
      }
      mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(1));
    }
    for (auto* r : held_) r->Finish(grpc::Status::CANCELLED);
  }

  absl::Mutex mu_;
  absl::Time stall_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Duration stall_length_ ABSL_GUARDED_BY(mu_);
  absl::Time stall_end_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::deque<grpc::ServerUnaryReactor*> held_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> answered_{0};
  std::thread timer_;
};

// Runs a FakeKserveService on 127.0.0.1:0.
class FakeKserveServer {
 public:
  FakeKserveServer() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~FakeKserveServer() {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  FakeKserveService& service() { return service_; }

 private:
  FakeKserveService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace moe::testing

#endif  // MOE_TESTS_FAKE_KSERVE_SERVER_H_
