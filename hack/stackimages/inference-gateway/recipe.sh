# kaic's Gateway API implementation for the offline lab, with InferencePool
# backends served through their endpoint pickers (ext_proc): the recipe's
# own main package (gateway/) and kaic's chart (chart/). It stands in for
# Envoy Gateway's InferencePool support, whose data plane (Envoy, C++)
# cannot be built here. The version is kaic's own; the chart's image
# defaults to the ref built here.
v=v0.1.0
image inference-gateway "kaic.local/inference-gateway:$v" \
	-go ./gateway=/inference-gateway
chart inference-gateway chart -version "${v#v}" -app-version "$v"
