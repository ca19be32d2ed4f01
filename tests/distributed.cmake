# Data parallelism against real multi-process PyTorch (validation/distributed.json: DDP and
# ZeroRedundancyOptimizer on CPU with gloo, 2 and 4 ranks, measured per rank).
add_executable(distributed_test ${CMAKE_CURRENT_SOURCE_DIR}/distributed_test.cc)
target_link_libraries(distributed_test PRIVATE vramsim_cli_lib nlohmann_json::nlohmann_json
                                               GTest::gtest_main)
target_compile_definitions(distributed_test PRIVATE VRAMSIM_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
gtest_discover_tests(distributed_test TEST_PREFIX "distributed." DISCOVERY_TIMEOUT 60)
