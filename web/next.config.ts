import type { NextConfig } from "next";

// A static export: the coordinator serves `out/`, and any CDN can too (config.json says where
// the API is). trailingSlash gives every page its own folder/index.html.
const config: NextConfig = {
  output: "export",
  trailingSlash: true,
  images: { unoptimized: true },
};

export default config;
