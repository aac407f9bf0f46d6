// ParseIdList / ParseExpertList / ParseLayerList / FormatExpertList.
#include "model/expert_ranges.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ExpertRangesTest, ParsesSinglesRangesAndListsSortedAndTrimmed) {
  EXPECT_THAT(*ParseExpertList("3", 8), ElementsAre(3));
  EXPECT_THAT(*ParseExpertList("0-3", 8), ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(*ParseExpertList("0,2,5", 8), ElementsAre(0, 2, 5));
  EXPECT_THAT(*ParseExpertList(" 6-7 , 1 ,3-4", 8), ElementsAre(1, 3, 4, 6, 7));
  EXPECT_THAT(*ParseExpertList("7,0-1", 8), ElementsAre(0, 1, 7));
  EXPECT_THAT(*ParseExpertList("0-7", 8), ElementsAre(0, 1, 2, 3, 4, 5, 6, 7));
}

TEST(ExpertRangesTest, RejectsBadPiecesNamingTheListAndThePiece) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : std::vector<Case>{
           {"", "expert list '' is empty"},
           {" , ", "is empty"},
           {"x", "bad piece 'x' (use N or A-B)"},
           {"4-2", "bad piece '4-2'"},
           {"-1", "bad piece '-1'"},
           {"1-", "bad piece '1-'"},
           {"0-8", "'0-8' is outside 0..7"},
           {"8", "'8' is outside 0..7"},
           {"1,0-2", "names the same expert twice"},
       }) {
    EXPECT_THAT(ParseExpertList(c.text, 8),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << "'" << c.text << "'";
  }
  EXPECT_THAT(ParseIdList("9", 4, "layer"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("layer list '9': '9' is outside 0..3")));
}

TEST(ExpertRangesTest, LayerListTakesAll) {
  EXPECT_THAT(*ParseLayerList("all", 3), ElementsAre(0, 1, 2));
  EXPECT_THAT(*ParseLayerList(" all ", 1), ElementsAre(0));
  EXPECT_THAT(*ParseLayerList("1-2", 4), ElementsAre(1, 2));
  EXPECT_THAT(ParseLayerList("all", 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no layers")));
  EXPECT_THAT(ParseLayerList("4", 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layer list '4'")));
}

TEST(ExpertRangesTest, FormatsRunsAndRoundTrips) {
  EXPECT_EQ(FormatExpertList({}), "");
  EXPECT_EQ(FormatExpertList({5}), "5");
  EXPECT_EQ(FormatExpertList({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
  EXPECT_EQ(FormatExpertList({1, 3, 5}), "1,3,5");
  const std::vector<int> ids = {0, 2, 3, 4, 9, 15, 16};
  EXPECT_EQ(*ParseExpertList(FormatExpertList(ids), 32), ids);
}

}  // namespace
}  // namespace moe
