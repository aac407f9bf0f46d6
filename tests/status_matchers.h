// GoogleTest helpers for absl::Status / StatusOr (abseil 20220623 ships
// none): EXPECT_OK, ASSERT_OK, ASSERT_OK_AND_ASSIGN and StatusIs().
#ifndef MOE_TESTS_STATUS_MATCHERS_H_
#define MOE_TESTS_STATUS_MATCHERS_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moe::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// StatusIs(code, message_matcher): matches a Status or StatusOr.
MATCHER_P2(StatusIs, code, message_matcher,
           std::string("has code ") + absl::StatusCodeToString(code)) {
  const absl::Status& s = GetStatus(arg);
  if (s.code() != code) {
    *result_listener << "whose status is " << s;
    return false;
  }
  return ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

}  // namespace moe::testing

#define EXPECT_OK(expr) \
  EXPECT_TRUE(::moe::testing::GetStatus(expr).ok()) << ::moe::testing::GetStatus(expr)
#define ASSERT_OK(expr) \
  ASSERT_TRUE(::moe::testing::GetStatus(expr).ok()) << ::moe::testing::GetStatus(expr)

#define MOE_TEST_CONCAT_INNER_(x, y) x##y
#define MOE_TEST_CONCAT_(x, y) MOE_TEST_CONCAT_INNER_(x, y)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(MOE_TEST_CONCAT_(statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  ASSERT_TRUE(statusor.ok()) << statusor.status();      \
  lhs = std::move(statusor).value()

#endif  // MOE_TESTS_STATUS_MATCHERS_H_
