# Many GPUs (issue 16): pipeline stages and schedules; the layout search.
add_executable(pipeline_test pipeline_test.cc)
target_link_libraries(pipeline_test PRIVATE vramsim_engine GTest::gtest_main)
gtest_discover_tests(pipeline_test TEST_PREFIX "pipeline." DISCOVERY_TIMEOUT 60)
