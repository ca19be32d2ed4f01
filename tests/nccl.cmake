# NCCL's communication buffers as a device-profile term (devices.h NcclBuffers) in estimate and
# fit (issue 16).
add_executable(nccl_test nccl_test.cc)
target_link_libraries(nccl_test PRIVATE vramsim_engine GTest::gtest_main)
target_compile_definitions(nccl_test PRIVATE VRAMSIM_EXAMPLES="${CMAKE_SOURCE_DIR}/examples")
gtest_discover_tests(nccl_test TEST_PREFIX "nccl." DISCOVERY_TIMEOUT 60)
