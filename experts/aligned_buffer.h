// AlignedBuffer: a grow-only, 64-byte aligned byte buffer for per-batch
// scratch memory. It never shrinks, so a steady stream of batches touches
// the same pages and pays no page-fault cost after the first (large)
// batch. Not thread-safe; each user owns its own.
#ifndef MOE_EXPERTS_ALIGNED_BUFFER_H_
#define MOE_EXPERTS_ALIGNED_BUFFER_H_

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

namespace moe {

class AlignedBuffer {
 public:
  // Ensures room for `bytes` bytes and returns the (possibly new) start.
  // Contents are not preserved across growth.
  void* Reserve(size_t bytes) {
    if (bytes > capacity_) {
      const size_t rounded = (bytes + 4095) & ~static_cast<size_t>(4095);
      void* p = std::aligned_alloc(64, rounded);
      if (p == nullptr) throw std::bad_alloc();
      data_.reset(p);
      capacity_ = rounded;
    }
    return data_.get();
  }

  template <typename T>
  T* ReserveAs(size_t count) {
    return static_cast<T*>(Reserve(count * sizeof(T)));
  }

  // The start (null before the first Reserve).
  const void* data() const { return data_.get(); }
  size_t capacity() const { return capacity_; }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data_;
  size_t capacity_ = 0;
};

}  // namespace moe

#endif  // MOE_EXPERTS_ALIGNED_BUFFER_H_
