# The Gatling bundle the contest ran its stress test with, wrapped with a JDK from nixpkgs.
{
  fetchzip,
  writeShellApplication,
  coreutils,
  jdk17_headless,
}:
let
  version = "3.10.5";
  bundle = fetchzip {
    url = "mirror://maven/io/gatling/highcharts/gatling-charts-highcharts-bundle/${version}/gatling-charts-highcharts-bundle-${version}-bundle.zip";
    hash = "sha256-2YsMKEuLesVgaBm5KiqpQd8u6ne/1kUe0GyzxXxJ1Sw=";
  };
in
writeShellApplication {
  name = "gatling";
  runtimeInputs = [
    coreutils
    jdk17_headless
  ];
  runtimeEnv = {
    GATLING_BUNDLE = "${bundle}";
    GATLING_VERSION = version;
    JAVA_HOME = jdk17_headless.home;
  };
  text = builtins.readFile ./scripts/gatling.sh;
  meta = {
    description = "Gatling ${version}, the contest's load generator";
    mainProgram = "gatling";
  };
}
