# Install rules: headers, the library, reki.pc and the CMake package reki::reki.
# Included at the end of the top CMakeLists.txt, after the reki target exists.
include(CMakePackageConfigHelpers)

set(REKI_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/reki)
set(REKI_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(TARGETS reki EXPORT rekiTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Development
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Runtime
    NAMELINK_COMPONENT Development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT Runtime
  PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/reki COMPONENT Development)

# libreki-cluster.a and reki/cluster.h, when the cluster layer is built.
if(TARGET reki-cluster)
  install(TARGETS reki-cluster EXPORT rekiTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Development
    PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/reki COMPONENT Development)
  set(REKI_HAS_CLUSTER ON)
else()
  set(REKI_HAS_CLUSTER OFF)
endif()

install(EXPORT rekiTargets NAMESPACE reki:: FILE rekiTargets.cmake
  DESTINATION ${REKI_CMAKE_DIR} COMPONENT Development)

# The package config must recreate the imported targets that a static
# libreki.a names in its link interface (PkgConfig::URCU_BP, PkgConfig::CK,
# Threads::Threads); a shared libreki.so carries them itself.
if(BUILD_SHARED_LIBS)
  set(REKI_STATIC_LIB OFF)
else()
  set(REKI_STATIC_LIB ON)
endif()
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/rekiConfig.cmake.in
  ${PROJECT_BINARY_DIR}/rekiConfig.cmake
  INSTALL_DESTINATION ${REKI_CMAKE_DIR}
  NO_SET_AND_CHECK_MACRO NO_CHECK_REQUIRED_COMPONENTS_MACRO)
# 0.x releases may break the API between minor versions.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/rekiConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/rekiConfig.cmake ${PROJECT_BINARY_DIR}/rekiConfigVersion.cmake
  DESTINATION ${REKI_CMAKE_DIR} COMPONENT Development)

# reki.pc is written at install time so that its prefix is the one actually
# installed to (`cmake --install build --prefix P` overrides the configured one).
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(REKI_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(REKI_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
install(CODE "
  set(REKI_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(REKI_PC_LIBDIR [==[${REKI_PC_LIBDIR}]==])
  set(REKI_PC_INCLUDEDIR [==[${REKI_PC_INCLUDEDIR}]==])
  set(REKI_PC_VERSION \"${PROJECT_VERSION}\")
  configure_file(\"${CMAKE_CURRENT_LIST_DIR}/reki.pc.in\" \"${PROJECT_BINARY_DIR}/reki.pc\" @ONLY)
" COMPONENT Development)
install(FILES ${PROJECT_BINARY_DIR}/reki.pc DESTINATION ${REKI_PKGCONFIG_DIR} COMPONENT Development)
if(REKI_HAS_CLUSTER)
  install(CODE "
    set(REKI_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
    set(REKI_PC_LIBDIR [==[${REKI_PC_LIBDIR}]==])
    set(REKI_PC_INCLUDEDIR [==[${REKI_PC_INCLUDEDIR}]==])
    set(REKI_PC_VERSION \"${PROJECT_VERSION}\")
    configure_file(\"${CMAKE_CURRENT_LIST_DIR}/reki-cluster.pc.in\" \"${PROJECT_BINARY_DIR}/reki-cluster.pc\" @ONLY)
  " COMPONENT Development)
  install(FILES ${PROJECT_BINARY_DIR}/reki-cluster.pc DESTINATION ${REKI_PKGCONFIG_DIR}
    COMPONENT Development)
endif()
