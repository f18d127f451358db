"""The words and places the demo's data is made of: Chinese names in pinyin, cities with their
coordinates, company and product vocabulary. Everything here is invented for the demo."""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    name: str
    code: str
    latitude: float
    longitude: float
    districts: tuple[str, ...]


CITIES = {city.name: city for city in (
    City("Beijing", "BJ", 39.9042, 116.4074, ("Chaoyang", "Haidian", "Daxing", "Shunyi", "Fengtai")),
    City("Tianjin", "TJ", 39.3434, 117.3616, ("Binhai", "Xiqing", "Beichen", "Dongli")),
    City("Tangshan", "TS", 39.6305, 118.1802, ("Lubei", "Fengrun", "Caofeidian")),
    City("Shijiazhuang", "SJZ", 38.0428, 114.5149, ("Chang'an", "Yuhua", "Luquan")),
    City("Taiyuan", "TY", 37.8706, 112.5489, ("Xiaodian", "Jinyuan", "Wanbailin")),
    City("Shanghai", "SH", 31.2304, 121.4737, ("Pudong", "Jing'an", "Minhang", "Songjiang", "Jiading", "Xuhui")),
    City("Suzhou", "SZ", 31.2989, 120.5853, ("Industrial Park", "Wuzhong", "Xiangcheng", "Kunshan")),
    City("Nanjing", "NJ", 32.0603, 118.7969, ("Jiangning", "Gulou", "Qixia", "Pukou")),
    City("Wuxi", "WX", 31.4912, 120.3119, ("Xinwu", "Binhu", "Huishan")),
    City("Hangzhou", "HZ", 30.2741, 120.1551, ("Xihu", "Binjiang", "Xiaoshan", "Yuhang", "Gongshu")),
    City("Ningbo", "NB", 29.8683, 121.5440, ("Beilun", "Yinzhou", "Zhenhai")),
    City("Chengdu", "CD", 30.5728, 104.0668, ("Jinjiang", "Wuhou", "Shuangliu", "Longquanyi", "Gaoxin")),
    City("Chongqing", "CQ", 29.5630, 106.5516, ("Yubei", "Jiangbei", "Shapingba", "Liangjiang")),
    City("Guangzhou", "GZ", 23.1291, 113.2644, ("Tianhe", "Yuexiu", "Haizhu", "Panyu", "Baiyun")),
    City("Foshan", "FS", 23.0215, 113.1214, ("Chancheng", "Nanhai", "Shunde")),
    City("Shenzhen", "SZN", 22.5431, 114.0579, ("Futian", "Nanshan", "Luohu", "Bao'an", "Longgang")),
    City("Dongguan", "DG", 23.0207, 113.7518, ("Songshan Lake", "Chang'an", "Humen")),
    City("Wuhan", "WH", 30.5928, 114.3055, ("Jiang'an", "Wuchang", "Hanyang", "Optics Valley")),
    City("Changsha", "CS", 28.2282, 112.9388, ("Yuelu", "Furong", "Kaifu")),
    City("Zhengzhou", "ZZ", 34.7466, 113.6254, ("Jinshui", "Zhongyuan", "Zhengdong")),
)}

SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma", "Zhu", "Hu",
            "Guo", "He", "Gao", "Lin", "Luo", "Zheng", "Liang", "Xie", "Song", "Tang", "Han", "Feng", "Deng", "Cao", "Peng")
GIVEN_NAMES = ("Wei", "Fang", "Na", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yong", "Yan", "Jie", "Tao", "Ming",
               "Chao", "Xiuying", "Xia", "Ping", "Gang", "Hui", "Xin", "Bo", "Yu", "Hao", "Lin", "Kai", "Rui", "Ting", "Xiaoming",
               "Jianguo", "Haiyan", "Zhiqiang", "Lihua", "Dongmei", "Wenjie")
BRAND_WORDS = ("Huarun", "Xinda", "Hengtong", "Jinlong", "Zhongke", "Tianyu", "Boyuan", "Hongxing", "Ruifeng", "Changjiang",
               "Dongfang", "Kaida", "Shengtai", "Yongxin", "Haitian", "Minghua", "Jiahe", "Fuxing", "Guangda", "Xinghe",
               "Huaneng", "Zhongyuan", "Anda", "Baosheng", "Chenguang", "Dingsheng", "Feida", "Hengrui", "Jintai", "Longsheng",
               "Meida", "Qiming", "Runfeng", "Shunda", "Tongda", "Weiye", "Xianghe", "Yida", "Zhenhua", "Lianhe")
INDUSTRIES = {
    "machinery": ("Steel", "Chemical", "Petrochemical", "Cement", "Power", "Paper", "Glass", "Pharmaceutical", "Food Processing",
                  "Textile", "Mining", "Water Treatment", "Fertiliser", "Metallurgy"),
    "media": ("Dairy", "Beverages", "Cosmetics", "Automotive", "Real Estate", "Insurance", "Mobile", "Sportswear", "Snacks",
              "Home Appliances", "Travel", "E-commerce", "Jewellery", "Education"),
    "digital": ("Hospital", "Water Supply", "Metro", "Airport", "Port", "Grid", "Logistics", "Tobacco", "Bank", "University",
                "Smart City", "Gas Supply", "Highway", "Public Security"),
}
PUBLIC_BODIES = ("Municipal Bureau of Transport", "People's Hospital", "Water Supply Group", "Municipal Data Bureau",
                 "Metro Operation Co.", "Port Authority", "Power Supply Bureau", "Public Resources Trading Center")
JOB_TITLES = ("General Manager", "Purchasing Manager", "Plant Manager", "Chief Engineer", "IT Director", "Marketing Director",
              "Brand Manager", "Equipment Manager", "Finance Director", "Procurement Specialist", "Vice President", "Project Lead")
STREETS = ("Renmin Road", "Jiefang Avenue", "Zhongshan Road", "Jianshe Road", "Industrial Park Road", "Keji Road",
           "Binhe Avenue", "Xinhua Street", "Century Avenue", "Changjiang Road", "Huanghe Road", "Gaoxin Avenue")

OFFERINGS = {
    ("machinery", "product_sale"): ("centrifugal compressor", "screw compressor package", "magnetic-bearing blower",
                                    "process pump set", "steam turbine overhaul kit", "DCS control upgrade"),
    ("machinery", "project_sale"): ("waste-heat recovery plant", "air separation unit", "compressed-air station rebuild",
                                    "energy-saving retrofit", "blast furnace blower station"),
    ("media", "product_sale"): ("spring campaign", "LED screen package", "elevator screen flight", "metro light box campaign",
                                "brand launch campaign", "Singles' Day campaign", "summer roadshow media"),
    ("digital", "project_sale"): ("smart hospital platform", "MES rollout", "data centre build", "IoT monitoring platform",
                                  "smart water network", "city operations centre", "ERP integration"),
    ("digital", "product_sale"): ("analytics licences", "IoT gateway batch", "cloud subscription", "security appliance refresh",
                                  "video analytics licences"),
}
NEXT_STEPS = ("Site survey", "Technical clarification", "Send revised quote", "Workshop with plant engineers",
              "Meeting with procurement", "Prepare bid documents", "Reference visit", "Contract review with legal",
              "Confirm delivery schedule", "Present media plan")
LEAD_DESCRIPTIONS = ("Asked for a brochure at the trade fair.", "Downloaded the energy-saving white paper.",
                     "Referred by an existing customer.", "Called the hotline about a replacement.",
                     "Tender announcement seen on the public procurement site.", "Asked for outdoor media rates.")
VISIT_SUBJECTS = ("Quarterly business review", "Site survey", "Technical exchange", "Relationship visit",
                  "Commissioning follow-up", "Campaign review", "Requirements workshop")
CALL_SUBJECTS = ("Follow-up call", "Price discussion", "Delivery date check", "Payment reminder", "Intro call")
NOTE_SUBJECTS = ("Meeting minutes", "Competitor intelligence", "Budget information", "Decision makers")
TASK_SUBJECTS = ("Send quotation", "Prepare contract draft", "Book site visit", "Update account plan",
                 "Collect overdue payment", "Arrange reference call", "Submit bid bond", "Prepare campaign proposal")
FINDINGS = ("Bearing temperature above limit.", "Vibration within limits; filters replaced.", "Seal leakage found and fixed.",
            "Control software two versions behind.", "Impeller wear visible; replacement advised within a year.",
            "Oil analysis normal.", "Motor insulation aged.", "Performance test passed after inspection.")
PARTNER_SUFFIXES = ("Trading Co., Ltd.", "Technology Co., Ltd.", "Equipment Co., Ltd.", "Media Agency", "Systems Integrator")
COMPETITORS = (("Zhongtian Compressor", "Low prices; strong in steel and cement."),
               ("Pearl River Outdoor Media", "Dense LED screen network in South China."),
               ("Yunhai Smart Systems", "Government relationships in central provinces."))


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(SURNAMES)} {rng.choice(GIVEN_NAMES)}"


def phone(rng: random.Random) -> str:
    return f"+86 1{rng.choice('3589')}{rng.randint(0, 9)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"


def street_address(rng: random.Random, city: City) -> str:
    return f"No. {rng.randint(1, 999)} {rng.choice(STREETS)}, {rng.choice(city.districts)} District, {city.name}"


def near(rng: random.Random, city: City, spread_degrees: float) -> dict[str, float]:
    """A point around the city centre (a triangular spread, denser in the middle)."""
    return {"latitude": round(city.latitude + rng.triangular(-spread_degrees, spread_degrees), 6),
            "longitude": round(city.longitude + rng.triangular(-spread_degrees, spread_degrees), 6)}


def email_of(name: str, domain: str) -> str:
    return f"{name.lower().replace(' ', '.')}@{domain}"
