# The native part of qed-image: Linux open-file-description locks and the size of a block
# device, the two things Node's fs cannot do. Built by `npm ci` / `npm run build` through
# the node-gyp that ships with npm; loaded by src/io/native.ts.
{
  "targets": [
    {
      "target_name": "qed_native",
      "sources": ["qed_native.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Werror"]
    }
  ]
}
