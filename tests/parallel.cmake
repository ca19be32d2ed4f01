# Many GPUs (issue 16): pipeline stages and schedules; the layout search.
add_executable(pipeline_test pipeline_test.cc)
target_link_libraries(pipeline_test PRIVATE vramsim_engine GTest::gtest_main)
gtest_discover_tests(pipeline_test TEST_PREFIX "pipeline." DISCOVERY_TIMEOUT 60)
add_executable(layout_test layout_test.cc)
target_link_libraries(layout_test PRIVATE vramsim_engine GTest::gtest_main)
target_compile_definitions(layout_test PRIVATE VRAMSIM_EXAMPLES="${CMAKE_SOURCE_DIR}/examples")
gtest_discover_tests(layout_test TEST_PREFIX "layout." DISCOVERY_TIMEOUT 60)
