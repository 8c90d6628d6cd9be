// SPDX-License-Identifier: Apache-2.0
// The behaviour every ObjectStore owes its callers, as one set of tests that
// runs against the in-memory fake (tier_fake) and against the S3 client
// talking to a real s3rver (tier_s3rver): whatever the uploader and the cache
// are tested with must behave as the real thing does.
//
// A test program compiles store_contract.cc in and instantiates the suite
// with a factory: INSTANTIATE_TEST_SUITE_P(Name, ObjectStoreContract, Values(factory)).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "core/object_store.h"

namespace hpfile::testing {

// A store for one test; every test writes only under its own key prefix.
using StoreFactory = std::function<std::unique_ptr<ObjectStore>()>;

class ObjectStoreContract : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override;

  ObjectStore& store() { return *store_; }
  // A prefix no other test uses, ending in '/'.
  const std::string& prefix() const { return prefix_; }

 private:
  std::unique_ptr<ObjectStore> store_;
  std::string prefix_;
};

}  // namespace hpfile::testing
