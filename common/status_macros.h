// Status propagation macros. abseil 20220623 ships Status and StatusOr but
// not these, so they are written once here.
//
//   MOE_RETURN_IF_ERROR(expr);          returns expr's Status if it is not OK.
//   MOE_ASSIGN_OR_RETURN(lhs, expr);    evaluates a StatusOr<T>, returns its
//                                       Status on error, else moves the value
//                                       into lhs (which may be a declaration).
#ifndef MOE_COMMON_STATUS_MACROS_H_
#define MOE_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MOE_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::absl::Status moe_status_internal_ = (expr); \
    if (!moe_status_internal_.ok()) {             \
      return moe_status_internal_;                \
    }                                             \
  } while (false)

#define MOE_STATUS_MACROS_CONCAT_INNER_(x, y) x##y
#define MOE_STATUS_MACROS_CONCAT_(x, y) MOE_STATUS_MACROS_CONCAT_INNER_(x, y)

#define MOE_ASSIGN_OR_RETURN(lhs, expr) \
  MOE_ASSIGN_OR_RETURN_IMPL_(MOE_STATUS_MACROS_CONCAT_(moe_statusor_, __LINE__), lhs, expr)

// `statusor` and `lhs` name declarations, which parentheses would break.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define MOE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  if (!statusor.ok()) {                                 \
    return std::move(statusor).status();                \
  }                                                     \
  lhs = std::move(statusor).value()
// NOLINTEND(bugprone-macro-parentheses)

#endif  // MOE_COMMON_STATUS_MACROS_H_
