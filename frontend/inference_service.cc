#include "frontend/inference_service.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "frontend/model_descriptors.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/proto_buffer_reader.h"

namespace moe {
namespace {

using inference::ModelInferRequest;
using inference::ModelInferResponse;
using inference::ModelStreamInferResponse;

absl::Time DeadlineOf(const grpc::CallbackServerContext* ctx) {
  const auto d = ctx->deadline();
  if (d == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(d);
}

// Finishes a unary call, unless the drain's last step holds answers back
// (held_answers.h): then it finishes when they are released.
grpc::ServerUnaryReactor* FinishNow(ServingCore* core, grpc::CallbackServerContext* ctx,
                                    const grpc::Status& s) {
  core->NoteArrival();
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  core->held_answers().HoldOrRun([reactor, s] { reactor->Finish(s); }, DeadlineOf(ctx));
  return reactor;
}

// Parses a raw request body. `bytes` is shared, not copied.
bool ParseInferRequest(const grpc::ByteBuffer& bytes, ModelInferRequest* out) {
  grpc::ByteBuffer view(bytes);  // shares the slices, no copy of the payload
  grpc::ProtoBufferReader reader(&view);
  return reader.status().ok() && out->ParseFromZeroCopyStream(&reader);
}

constexpr char kNotARequest[] =
    "request body is not a valid inference.ModelInferRequest (corrupt or truncated protobuf, "
    "or a string field that is not UTF-8)";

// ---- ModelInfer --------------------------------------------------------

class InferReactor final : public grpc::ServerUnaryReactor {
 public:
  // `req_bytes` is the raw request body: it is parsed here so that a body
  // that is not a ModelInferRequest gets INVALID_ARGUMENT with a message
  // (gRPC's own parse failure is an empty UNIMPLEMENTED).
  InferReactor(ServingCore* core, grpc::CallbackServerContext* ctx,
               const grpc::ByteBuffer* req_bytes, grpc::ByteBuffer* resp_bytes)
      : core_(core), resp_bytes_(resp_bytes), start_(absl::Now()), deadline_(DeadlineOf(ctx)) {
    core_->NoteArrival();
    core_->AnswersPending(1);  // until OnDone: the answer has been sent
    if (!ParseInferRequest(*req_bytes, &request_)) {
      FinishWith(absl::InvalidArgumentError(kNotARequest), 0);
      return;
    }
    auto found = core_->FindModel(request_.model_name(), request_.model_version());
    if (!found.ok()) {
      FinishWith(found.status(), 0);
      return;
    }
    model_ = *found;
    auto decoded = DecodeInferRequest(request_, model_->io());
    if (!decoded.ok()) {
      FinishWith(decoded.status(), 0);
      return;
    }
    decoded_ = *std::move(decoded);
    task_ = MakeInferTask(decoded_, RequestDeadline(decoded_, start_, DeadlineOf(ctx)));
    const int64_t tokens = task_->num_tokens;
    task_->done = [this, tokens](const absl::Status& st, InferTask& task) {
      absl::Status result = st;
      if (result.ok()) {
        EncodeInferResponse(decoded_, task, model_->io(), &response_);
        bool own_buffer = false;
        grpc::Status ser = grpc::SerializationTraits<ModelInferResponse>::Serialize(
            response_, resp_bytes_, &own_buffer);
        if (!ser.ok()) result = absl::InternalError("cannot serialize the response");
      }
      FinishWith(result, tokens, task.queue_time);
    };
    absl::Status st = core_->Submit(*model_, task_);
    if (!st.ok()) FinishWith(st, 0);
  }

  void OnCancel() override {
    if (task_ != nullptr) {
      task_->cancelled.store(true);
      core_->NotifyCancelled();
    }
  }
  void OnDone() override {
    core_->AnswersSent(1);
    delete this;
  }

 private:
  // Records and sends the answer. An OK answer goes at once; any other may
  // be held back by the drain's last step (held_answers.h).
  void FinishWith(const absl::Status& st, int64_t tokens_in,
                  absl::Duration queue = absl::ZeroDuration()) {
    if (!st.ok()) {
      core_->held_answers().HoldOrRun([this, st, tokens_in, queue] { Send(st, tokens_in, queue); },
                                      deadline_);
      return;
    }
    Send(st, tokens_in, queue);
  }
  void Send(const absl::Status& st, int64_t tokens_in, absl::Duration queue) {
    if (model_ == nullptr) {
      core_->RecordUnrouted(st);
    } else {
      model_->metrics().RecordRequest(st, tokens_in, st.ok() ? tokens_in : 0, absl::Now() - start_,
                                      queue);
    }
    Finish(ToGrpcStatus(st));
  }

  ServingCore* const core_;
  const ServedModel* model_ = nullptr;  // once the request names a served one
  grpc::ByteBuffer* const resp_bytes_;
  const absl::Time start_;
  const absl::Time deadline_;
  ModelInferRequest request_;
  ModelInferResponse response_;
  DecodedRequest decoded_;
  std::shared_ptr<InferTask> task_;
};

}  // namespace

// ---- ModelStreamInfer --------------------------------------------------

// The open streams, so that the drain can end them (CloseStreams).
class StreamRegistry {
 public:
  // A stream's side of the drain; implemented by StreamReactor.
  class Stream {
   public:
    virtual ~Stream() = default;
    // Marks the stream closing; returns the status to Finish with now (the
    // caller calls Finish outside every lock) or nullopt if answers are
    // still in flight (the last one finishes it).
    virtual std::optional<grpc::Status> CloseForDrain() = 0;
    virtual void FinishNow(const grpc::Status& status) = 0;
  };

  // False once closing: the new stream must end at once.
  bool Add(Stream* s) {
    absl::MutexLock lock(&mu_);
    if (closing_) return false;
    streams_.push_back(s);
    return true;
  }
  void Remove(Stream* s) {
    absl::MutexLock lock(&mu_);
    streams_.erase(std::find(streams_.begin(), streams_.end(), s));
  }
  void CloseAll() {
    std::vector<std::pair<Stream*, grpc::Status>> finish;
    {
      absl::MutexLock lock(&mu_);
      closing_ = true;
      for (Stream* s : streams_) {
        if (auto st = s->CloseForDrain()) finish.emplace_back(s, *st);
      }
    }
    // A stream that returned a status is marked finished, so no one else
    // finishes it, and gRPC deletes it (OnDone) only after this Finish.
    for (auto& [s, st] : finish) s->FinishNow(st);
  }

 private:
  absl::Mutex mu_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Stream*> streams_ ABSL_GUARDED_BY(mu_);
};

namespace {

const grpc::Status kStreamClosedByDrain(grpc::StatusCode::UNAVAILABLE,
                                        "server is shutting down (draining); open the stream "
                                        "again, elsewhere");

// Raw (ByteBuffer) like ModelInfer: a message that is not a request gets an
// error_message answer and the stream goes on, instead of gRPC ending the
// stream as if the client had closed it.
class StreamReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                            public StreamRegistry::Stream {
 public:
  StreamReactor(ServingCore* core, StreamRegistry* registry, grpc::CallbackServerContext* ctx)
      : core_(core), registry_(registry), deadline_(DeadlineOf(ctx)) {
    if (!registry_->Add(this)) {
      registered_ = false;
      {
        absl::MutexLock lock(&mu_);
        finished_ = true;
      }
      Finish(kStreamClosedByDrain);
      return;
    }
    StartRead(&read_bytes_);
  }

  std::optional<grpc::Status> CloseForDrain() override {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    return MaybeFinishLocked();
  }
  void FinishNow(const grpc::Status& status) override { Finish(status); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::optional<grpc::Status> fin;
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
        fin = MaybeFinishLocked();
      }
      if (fin) Finish(*fin);
      return;
    }
    const absl::Time start = absl::Now();
    core_->NoteArrival();
    request_.Clear();
    if (!ParseInferRequest(read_bytes_, &request_)) {
      const absl::Status bad = absl::InvalidArgumentError(kNotARequest);
      core_->RecordUnrouted(bad);
      AnswerWithError(bad, "", "", nullptr);
      return;
    }
    auto found = core_->FindModel(request_.model_name(), request_.model_version());
    if (!found.ok()) {
      core_->RecordUnrouted(found.status());
      AnswerWithError(found.status(), request_.id(), request_.model_name(), nullptr);
      return;
    }
    const ServedModel* model = *found;
    auto decoded = DecodeInferRequest(request_, model->io());
    if (!decoded.ok()) {
      model->metrics().RecordRequest(decoded.status(), 0, 0, absl::Now() - start,
                                     absl::ZeroDuration());
      AnswerWithError(decoded.status(), request_.id(), request_.model_name(), nullptr);
      return;
    }
    auto shared = std::make_shared<DecodedRequest>(*std::move(decoded));
    auto task = MakeInferTask(*shared, RequestDeadline(*shared, start, deadline_));
    const int64_t tokens = task->num_tokens;
    task->done = [this, model, shared, start, tokens](const absl::Status& st, InferTask& t) {
      OnTaskDone(*model, *shared, start, tokens, st, t);
    };
    if (!ListTask(task.get())) return;
    absl::Status st = core_->Submit(*model, task);
    if (!st.ok()) {
      model->metrics().RecordRequest(st, 0, 0, absl::Now() - start, absl::ZeroDuration());
      AnswerWithError(st, shared->id, model->name(), task.get());
      return;
    }
    ReadNextUnlessFinished();
  }

  // A task's answer, queued for writing (on a batcher thread, outside any
  // gRPC reaction: Finish may delete the reactor, so it is the last thing
  // that touches it).
  void OnTaskDone(const ServedModel& model, const DecodedRequest& request, absl::Time start,
                  int64_t tokens, const absl::Status& st, InferTask& t) {
    ModelStreamInferResponse resp;
    if (st.ok()) {
      EncodeInferResponse(request, t, model.io(), resp.mutable_infer_response());
    } else {
      resp.set_error_message(std::string(st.message()));
      resp.mutable_infer_response()->set_id(request.id);
      resp.mutable_infer_response()->set_model_name(model.name());
    }
    model.metrics().RecordRequest(st, tokens, st.ok() ? tokens : 0, absl::Now() - start,
                                  t.queue_time);
    std::optional<grpc::Status> fin;
    {
      absl::MutexLock lock(&mu_);
      tasks_.erase(std::find(tasks_.begin(), tasks_.end(), &t));
      fin = QueueWriteLocked(resp);
    }
    if (fin) Finish(*fin);
  }

  // Lists `task` as in flight, unless the stream is finished or cancelled
  // (then false, and the stream finished if it is time).
  bool ListTask(InferTask* task) {
    std::optional<grpc::Status> fin;
    {
      absl::MutexLock lock(&mu_);
      // A read can complete after the stream was cancelled and even after
      // Finish(): submitting then would let the task answer a deleted
      // reactor. Listing it under the same lock holds Finish back.
      if (!finished_ && !cancelled_) {
        tasks_.push_back(task);
        return true;
      }
      fin = MaybeFinishLocked();
    }
    if (fin) Finish(*fin);
    return false;
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> fin;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      writes_.pop_front();
      core_->AnswersSent(1);
      if (!ok) broken_ = true;  // the client is gone; keep draining our queue
      if (!writes_.empty() && !broken_) {
        writing_ = true;
        StartWrite(&writes_.front());
      } else if (broken_) {
        core_->AnswersSent(static_cast<int64_t>(writes_.size()));
        writes_.clear();
      }
      fin = MaybeFinishLocked();
    }
    if (fin) Finish(*fin);
  }

  void OnCancel() override {
    std::optional<grpc::Status> fin;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      for (InferTask* t : tasks_) t->cancelled.store(true);
      core_->NotifyCancelled();
      // With nothing in flight no answer will come to finish the stream.
      fin = MaybeFinishLocked();
    }
    if (fin) Finish(*fin);
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&mu_);
      core_->AnswersSent(static_cast<int64_t>(writes_.size()));  // never to be written
    }
    if (registered_) registry_->Remove(this);
    delete this;
  }

 private:
  // Answers the current read with an error message (and unlists
  // `unlisted`, a task that was never accepted), then reads on.
  void AnswerWithError(const absl::Status& st, const std::string& id, const std::string& model,
                       InferTask* unlisted) {
    ModelStreamInferResponse resp;
    resp.set_error_message(std::string(st.message()));
    resp.mutable_infer_response()->set_id(id);
    resp.mutable_infer_response()->set_model_name(model);
    std::optional<grpc::Status> fin;
    {
      absl::MutexLock lock(&mu_);
      if (unlisted != nullptr) tasks_.erase(std::find(tasks_.begin(), tasks_.end(), unlisted));
      fin = QueueWriteLocked(resp);
    }
    if (fin) {
      Finish(*fin);
      return;
    }
    ReadNextUnlessFinished();
  }

  void ReadNextUnlessFinished() {
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || closing_) return;  // closing: no more requests
    }
    StartRead(&read_bytes_);
  }

  // Queues a response; returns the status to Finish with (outside the
  // lock) if the stream is done.
  std::optional<grpc::Status> QueueWriteLocked(const ModelStreamInferResponse& resp)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (broken_ || cancelled_) return MaybeFinishLocked();
    writes_.emplace_back();
    bool own_buffer = false;
    if (!grpc::SerializationTraits<ModelStreamInferResponse>::Serialize(resp, &writes_.back(),
                                                                        &own_buffer)
             .ok()) {
      writes_.pop_back();
      broken_ = true;  // cannot happen for a well-formed message; end the stream
      return MaybeFinishLocked();
    }
    core_->AnswersPending(1);
    if (!writing_) {
      writing_ = true;
      StartWrite(&writes_.front());
    }
    return std::nullopt;
  }

  // The stream is done once the client has closed its side (or cancelled),
  // every task has answered and every answer has been written (or the
  // stream is broken). Returns the final status exactly once; the caller
  // calls Finish() after releasing mu_.
  std::optional<grpc::Status> MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || !tasks_.empty() || writing_) return std::nullopt;
    if (!reads_done_ && !cancelled_ && !closing_) return std::nullopt;
    finished_ = true;
    if (cancelled_) return grpc::Status::CANCELLED;
    return reads_done_ ? grpc::Status::OK : kStreamClosedByDrain;
  }

  ServingCore* const core_;
  StreamRegistry* const registry_;
  bool registered_ = true;  // false: opened during the drain, never listed
  const absl::Time deadline_;
  grpc::ByteBuffer read_bytes_;  // the current read's raw message
  ModelInferRequest request_;    // parsed from it, reused for every read

  absl::Mutex mu_;
  // Unanswered tasks. Each stays alive while listed: the batcher holds it
  // until its `done` (which unlists it) has returned.
  std::vector<InferTask*> tasks_ ABSL_GUARDED_BY(mu_);
  std::deque<grpc::ByteBuffer> writes_ ABSL_GUARDED_BY(mu_);  // serialized answers
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;  // the drain ends the stream
};

}  // namespace

InferenceService::InferenceService(ServingCore* core)
    : core_(core), streams_(std::make_unique<StreamRegistry>()) {}

InferenceService::~InferenceService() = default;

void InferenceService::CloseStreams() { streams_->CloseAll(); }

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

grpc::ServerUnaryReactor* InferenceService::ServerLive(grpc::CallbackServerContext* ctx,
                                                       const inference::ServerLiveRequest*,
                                                       inference::ServerLiveResponse* resp) {
  resp->set_live(true);
  return FinishNow(core_, ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ServerReady(grpc::CallbackServerContext* ctx,
                                                        const inference::ServerReadyRequest*,
                                                        inference::ServerReadyResponse* resp) {
  resp->set_ready(!core_->draining());
  return FinishNow(core_, ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelReady(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelReadyRequest* req,
                                                       inference::ModelReadyResponse* resp) {
  // An unknown model is not ready: OK with ready false, as Triton answers.
  resp->set_ready(ModelIsReady(*core_, req->name(), req->version()));
  return FinishNow(core_, ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ServerMetadata(
    grpc::CallbackServerContext* ctx, const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* resp) {
  FillServerMetadata(resp);
  return FinishNow(core_, ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelMetadata(
    grpc::CallbackServerContext* ctx, const inference::ModelMetadataRequest* req,
    inference::ModelMetadataResponse* resp) {
  auto model = core_->FindModel(req->name(), req->version());
  if (!model.ok()) return FinishNow(core_, ctx, ToGrpcStatus(model.status()));
  FillModelMetadata(**model, resp);
  return FinishNow(core_, ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelInfer(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* req,
                                                       grpc::ByteBuffer* resp) {
  return new InferReactor(core_, ctx, req, resp);
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* InferenceService::ModelStreamInfer(
    grpc::CallbackServerContext* ctx) {
  return new StreamReactor(core_, streams_.get(), ctx);
}

grpc::ServerUnaryReactor* InferenceService::ModelStatistics(
    grpc::CallbackServerContext* ctx, const inference::ModelStatisticsRequest* req,
    inference::ModelStatisticsResponse* resp) {
  absl::Status st = FillModelStatistics(*core_, req->name(), req->version(), resp);
  return FinishNow(core_, ctx, ToGrpcStatus(st));
}

grpc::ServerUnaryReactor* InferenceService::ModelConfig(grpc::CallbackServerContext* ctx,
                                                        const inference::ModelConfigRequest* req,
                                                        inference::ModelConfigResponse* resp) {
  auto model = core_->FindModel(req->name(), req->version());
  if (!model.ok()) return FinishNow(core_, ctx, ToGrpcStatus(model.status()));
  FillModelConfig(*core_, **model, resp->mutable_config());
  return FinishNow(core_, ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::RepositoryIndex(
    grpc::CallbackServerContext* ctx, const inference::RepositoryIndexRequest* req,
    inference::RepositoryIndexResponse* resp) {
  if (!req->repository_name().empty() && req->repository_name() != kRepositoryName) {
    return FinishNow(core_, ctx,
                     ToGrpcStatus(absl::NotFoundError(
                         absl::StrCat("unknown repository '", req->repository_name(),
                                      "' (this server has '", kRepositoryName, "')"))));
  }
  FillRepositoryIndex(*core_, req->ready(), resp);
  return FinishNow(core_, ctx, grpc::Status::OK);
}

}  // namespace moe
