# What a new user tripped over (issue 14): checkpoint ranges, the buffer that limits a dim,
# what an op's extra saved tensor is, the strategies chart, the planner's model-state floor.
add_executable(ux_test ux_test.cc)
target_link_libraries(ux_test PRIVATE vramsim_planner vramsim_engine vramsim_reports
  GTest::gtest_main)
target_compile_definitions(ux_test PRIVATE VRAMSIM_EXAMPLES="${CMAKE_SOURCE_DIR}/examples")
gtest_discover_tests(ux_test TEST_PREFIX "ux." DISCOVERY_TIMEOUT 60)
